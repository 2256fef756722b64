#include "partita/torch_bridge/batch_check.h"

#include <gtest/gtest.h>

#include "partita/graph/analysis.h"
#include "zoo.h"

namespace partita {

namespace {
BatchCheckResult check(const char* name, const char* input) {
  LoadedModel m = load_model(testing::zoo_model(name));
  const std::vector<InputSpec> specs{parse_input_spec(input)};
  annotate_shapes(m, specs);
  return check_batch_splittability(m, specs);
}
}  // namespace

TEST(BatchCheck, ZooModelsFollowTheBatch) {
  for (const auto& [name, input] : {std::pair{"mlp", "4x64"},
                                    {"cnn", "2x3x32x32"},
                                    {"gpt", "2x16:i64:2048"},
                                    {"cnn_train", "4x3x32x32"}}) {
    const BatchCheckResult r = check(name, input);
    EXPECT_TRUE(r.splittable()) << name << ": " << r.halves_detail;
    EXPECT_EQ(r.halves, HalvesVerdict::kAgree) << name;
    EXPECT_TRUE(r.problems.empty()) << name << ": node " << r.problems[0].node << " " << r.problems[0].detail;
  }
}

// shared_matrix(x, w): w has no batch (":shared"); the softmax over it alone is batch-free, the rest follows
// x's batch, and halves of x with w whole give the whole batch's output.
TEST(BatchCheck, ASharedInputIsNotPartOfTheBatch) {
  LoadedModel m = load_model(testing::zoo_model("shared_matrix"));
  const std::vector<InputSpec> specs{parse_input_spec("8x16"), parse_input_spec("16x16:shared")};
  annotate_shapes(m, specs);
  EXPECT_TRUE(m.ir.value(m.ir.inputs()[1]).shared);
  const BatchCheckResult r = check_batch_splittability(m, specs);
  EXPECT_TRUE(r.splittable()) << r.halves_detail;
  EXPECT_EQ(r.halves, HalvesVerdict::kAgree) << r.halves_detail;
  EXPECT_TRUE(r.problems.empty()) << "node " << r.problems[0].node << " " << r.problems[0].detail;
  const std::vector<bool> dep = batch_dependent(m.ir);
  EXPECT_FALSE(dep[m.ir.inputs()[1]]);
  int batch_free_softmax = 0;
  for (const Node& n : m.ir.nodes()) {
    if (n.op == "aten::softmax") batch_free_softmax += dep[n.outputs[0]] ? 0 : 1;
  }
  EXPECT_EQ(batch_free_softmax, 1);
}

TEST(BatchCheck, BakedReshapeIsNamed) {
  const BatchCheckResult r = check("baked_batch", "8x16");
  EXPECT_EQ(r.second_batch, 9);
  EXPECT_FALSE(r.splittable());
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].behavior, BatchBehavior::kMovesBatch);
  EXPECT_NE(r.problems[0].detail.find("[4, 32] at batch 8 vs [4, 36] at 9"), std::string::npos)
      << r.problems[0].detail;
}

// y, _ = lstm(x): the final states, batch in dim 1, are read by nothing; the output the model uses follows.
TEST(BatchCheck, OutputsNothingReadsDoNotCount) {
  const BatchCheckResult r = check("lstm", "4x6x8");
  EXPECT_TRUE(r.splittable());
  EXPECT_TRUE(r.problems.empty()) << "node " << r.problems[0].node << " " << r.problems[0].detail;
}

// _, (h, _) = lstm(x); head(h[-1]): the final state carries the batch in dim 1, which the shape check names,
// but two halves of a batch give the whole batch's outputs, so the batch splits.
TEST(BatchCheck, BatchOutsideDim0SplitsWhenTwoHalvesGiveTheWholeBatchsOutputs) {
  const BatchCheckResult r = check("lstm_state", "4x6x8");
  ASSERT_FALSE(r.problems.empty());
  EXPECT_EQ(r.problems[0].behavior, BatchBehavior::kMovesBatch);
  EXPECT_NE(r.problems[0].detail.find("[2, 4, 16] at batch 4 vs [2, 5, 16] at 5"), std::string::npos)
      << r.problems[0].detail;
  EXPECT_TRUE(r.halves_agree()) << r.halves_detail;
  EXPECT_TRUE(r.splittable());
  EXPECT_TRUE(check("lstm_state", "1x6x8").splittable());  // halves of a batch of 2
}

// x.t().reshape(batch, -1): each row mixes samples. The shapes alone look like a batch that moves and comes
// back; the halves differ, so the batch does not split.
TEST(BatchCheck, ABatchThatMovesAndMixesSamplesDoesNotSplit) {
  const BatchCheckResult r = check("scrambled_batch", "8x16");
  EXPECT_EQ(r.halves, HalvesVerdict::kMixSamples);
  EXPECT_NE(r.halves_detail.find("output 0 of two halves of a batch of 8 differs from the whole batch's"),
            std::string::npos)
      << r.halves_detail;
  EXPECT_FALSE(r.splittable());
}

// proj(x).transpose(0, 1): every sample computed on its own, but the output carries the batch in dim 1, so
// a split batch's outputs do not join along dim 0; the verdict names that cause, not mixing.
TEST(BatchCheck, AnOutputWithTheBatchOutsideDim0DoesNotSplit) {
  const BatchCheckResult r = check("sequence_first", "4x6x8");
  ASSERT_FALSE(r.problems.empty());
  EXPECT_EQ(r.problems.back().behavior, BatchBehavior::kMovesBatch);
  EXPECT_EQ(r.halves, HalvesVerdict::kOutputOutsideDim0) << r.halves_detail;
  EXPECT_NE(r.halves_detail.find("output 0 does not carry the batch in dim 0 ([6, 4, 16] at batch 4)"),
            std::string::npos)
      << r.halves_detail;
  EXPECT_FALSE(r.splittable());
}

// x - x.mean(0): every output follows the batch, but the batch mean (a node whose shape does not depend on
// the batch) mixes the samples; two halves of a batch give other values, so the batch stays whole.
TEST(BatchCheck, ABatchMeanThatReachesTheOutputDoesNotSplit) {
  const BatchCheckResult r = check("batch_centered", "8x16");
  ASSERT_FALSE(r.problems.empty());
  EXPECT_EQ(r.problems[0].behavior, BatchBehavior::kReducesBatch);
  EXPECT_EQ(r.halves, HalvesVerdict::kMixSamples) << r.halves_detail;
  EXPECT_FALSE(r.splittable());
}

// (head(x) ** 2).mean(): the output is 0-d, so no split batch's outputs can be joined.
TEST(BatchCheck, AModelReturningABatchMeanDoesNotSplit) {
  const BatchCheckResult r = check("own_loss", "8x16");
  ASSERT_FALSE(r.problems.empty());
  EXPECT_EQ(r.problems.back().behavior, BatchBehavior::kReducesBatch);
  EXPECT_EQ(r.halves, HalvesVerdict::kOutputOutsideDim0) << r.halves_detail;
  EXPECT_FALSE(r.splittable());
}

// head(x).flip(0): every node's output has the batch's shape, so only the halves show that a split reorders
// the samples.
TEST(BatchCheck, AModelWorkingAlongTheBatchWithoutChangingItsShapeDoesNotSplit) {
  const BatchCheckResult r = check("batch_flipped", "8x16");
  EXPECT_TRUE(r.problems.empty()) << "node " << r.problems[0].node << " " << r.problems[0].detail;
  EXPECT_EQ(r.halves, HalvesVerdict::kMixSamples) << r.halves_detail;
  EXPECT_FALSE(r.splittable());
}

// A sequence-first transformer layer with dropout, traced in train mode: the batch leaves dim 0 and dropout
// draws a new mask on every run. The halves run dropout as the identity, so they agree and the batch splits.
TEST(BatchCheck, DropoutInTrainModeDoesNotStopASplit) {
  const BatchCheckResult r = check("dropout_encoder", "4x6x16");
  ASSERT_FALSE(r.problems.empty());
  EXPECT_EQ(r.problems[0].behavior, BatchBehavior::kMovesBatch);
  EXPECT_EQ(r.halves, HalvesVerdict::kAgree) << r.halves_detail;
  EXPECT_TRUE(r.splittable());
}

// Random draws (dropout of every kind, a VAE's randn_like noise, rand_like noise, bernoulli units, one
// randn noise vector for the whole batch) do not stop a split: the halves run each float draw at its expected
// value, so they agree; the result names the draws besides dropout, which each share makes for itself.
TEST(BatchCheck, RandomDrawsThatFollowTheBatchDoNotStopASplit) {
  const BatchCheckResult r = check("stochastic", "8x32");
  EXPECT_EQ(r.halves, HalvesVerdict::kAgree) << r.halves_detail;
  EXPECT_TRUE(r.splittable());
  const LoadedModel m = load_model(testing::zoo_model("stochastic"));
  std::vector<std::string> ops;
  for (NodeId n : r.random_draws) ops.push_back(m.ir.node(n).op);
  EXPECT_EQ(ops, (std::vector<std::string>{"aten::randn_like", "aten::rand_like", "aten::bernoulli",
                                           "aten::randn"}));
}

// A random permutation of the batch mixes samples: integer draws stay random in the halves, which then
// differ from the whole batch, and the detail names the draw.
TEST(BatchCheck, ARandomPermutationOfTheBatchKeepsItWhole) {
  const BatchCheckResult r = check("shuffled_batch", "8x16");
  EXPECT_EQ(r.halves, HalvesVerdict::kMixSamples) << r.halves_detail;
  EXPECT_FALSE(r.splittable());
  EXPECT_NE(r.halves_detail.find("aten::randperm"), std::string::npos) << r.halves_detail;
}

}  // namespace partita

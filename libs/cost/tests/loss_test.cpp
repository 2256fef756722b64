#include "partita/cost/loss.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

// x (`input`) -> linear(w) -> scores f32[4, 10]; a second output, `extra`, when given.
Graph scorer(const TensorMeta& input, std::optional<TensorMeta> extra = std::nullopt) {
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {input};
  const ValueId w = g.add_parameter("w", true);
  g.value(w).tensors = {TensorMeta{{10, 64}, DType::kFloat32}};
  const ValueId scores = g.add_value(ValueKind::kTensor, "scores");
  g.value(scores).tensors = {TensorMeta{{4, 10}, DType::kFloat32}};
  std::vector<ValueId> outs{scores};
  if (extra) {
    const ValueId e = g.add_value(ValueKind::kTensor, "extra");
    g.value(e).tensors = {*extra};
    outs.push_back(e);
    g.add_node("aten::linear", {x, w}, {scores, e});
  } else {
    g.add_node("aten::linear", {x, w}, {scores});
  }
  g.set_outputs(outs);
  return g;
}

TEST(LossStepBytes, AreTheFloatOutputsSizeAndTheFirstOutputsTargets) {
  const Graph g = scorer(TensorMeta{{4, 64}, DType::kFloat32});
  // [4, 10] scores: 160 bytes kept (log-softmax; the gradient handed back), 4 int64 class indices.
  EXPECT_EQ(loss_step_bytes(g, LossKind::kAuto).value(), 160 + 4 * 8);
  EXPECT_EQ(loss_step_bytes(g, LossKind::kCrossEntropy).value(), 160 + 4 * 8);
  EXPECT_EQ(loss_step_bytes(g, LossKind::kMse).value(), 160 + 160);  // a float32 copy of the output's shape
  // A second floating output is held too; an integer one is not; only the first has targets.
  EXPECT_EQ(loss_step_bytes(scorer(TensorMeta{{4, 64}, DType::kFloat32}, TensorMeta{{4, 3}, DType::kFloat32}),
                            LossKind::kMse)
                .value(),
            160 + 48 + 160);
  EXPECT_EQ(loss_step_bytes(scorer(TensorMeta{{4, 64}, DType::kFloat32}, TensorMeta{{4, 3}, DType::kInt64}),
                            LossKind::kMse)
                .value(),
            160 + 160);
}

TEST(LossStepBytes, HaveNoTargetsWithoutABatchedInput) {
  Graph g = scorer(TensorMeta{{4, 64}, DType::kFloat32});
  g.value(g.inputs()[0]).shared = true;  // the one input is marked :shared
  ASSERT_LT(g.batch_input_index(), 0);
  EXPECT_EQ(loss_step_bytes(g, LossKind::kMse).value(), 160);
  EXPECT_EQ(loss_target_bytes(g, LossKind::kMse).value(), 0);
}

TEST(LossTargetBytes, OfAGraphAreItsFirstOutputsTargetsUnderTheResolvedLoss) {
  const Graph g = scorer(TensorMeta{{4, 64}, DType::kFloat32}, TensorMeta{{4, 3}, DType::kFloat32});
  EXPECT_EQ(loss_target_bytes(g, LossKind::kAuto).value(), 4 * 8);  // [4, 10] scores: cross-entropy's indices
  EXPECT_EQ(loss_target_bytes(g, LossKind::kMse).value(), 160);     // a float32 copy of the first output
  // Integer token ids in, [B, T, V] logits out: next-token, whose targets are the input itself.
  Graph tokens = scorer(TensorMeta{{4, 64}, DType::kInt64});
  tokens.value(tokens.outputs()[0]).tensors = {TensorMeta{{4, 64, 10}, DType::kFloat32}};
  EXPECT_EQ(loss_target_bytes(tokens, LossKind::kAuto).value(), 0);
  EXPECT_EQ(loss_target_bytes(tokens, LossKind::kAuto).value(),
            loss_target_bytes(LossKind::kNextToken, tokens.value(tokens.outputs()[0]).tensors[0]).value());
}

TEST(LossBackwardBytes, AreTheKeptBytesAndOneMoreTensorOfTheFirstOutputsSize) {
  const Graph g = scorer(TensorMeta{{4, 64}, DType::kFloat32});
  // Cross-entropy: the kept log-softmax and the targets (160 + 32), and the gradient it makes (160) while
  // the output's gradient takes the freed output's place.
  EXPECT_EQ(loss_backward_bytes(g, LossKind::kAuto).value(), 2 * 160 + 32);
  EXPECT_EQ(loss_backward_bytes(g, LossKind::kCrossEntropy).value(), 2 * 160 + 32);
  // MSE: the kept tensor of the output's size, the float32 targets (160) and one more.
  EXPECT_EQ(loss_backward_bytes(g, LossKind::kMse).value(), 2 * 160 + 160);
  // Only the first output has a loss: a second floating one counts once, as in loss_step_bytes.
  const Graph two = scorer(TensorMeta{{4, 64}, DType::kFloat32}, TensorMeta{{4, 3}, DType::kFloat32});
  EXPECT_EQ(loss_backward_bytes(two, LossKind::kMse).value(), 2 * 160 + 48 + 160);
  // Next-token, logits [2, 8, 50] from int64 tokens [2, 8]: no targets beyond the tokens.
  Graph lm;
  const ValueId tokens = lm.add_input("tokens");
  lm.value(tokens).tensors = {TensorMeta{{2, 8}, DType::kInt64}};
  const ValueId logits = lm.add_value(ValueKind::kTensor, "logits");
  lm.value(logits).tensors = {TensorMeta{{2, 8, 50}, DType::kFloat32}};
  lm.add_node("aten::embedding", {tokens}, {logits});
  lm.set_outputs({logits});
  EXPECT_EQ(loss_backward_bytes(lm, LossKind::kAuto).value(), 2 * 2 * 8 * 50 * 4);
  EXPECT_EQ(loss_step_bytes(lm, LossKind::kAuto).value(), 2 * 8 * 50 * 4);
}

TEST(LossKind, NamesRoundTripAndAnUnknownOneIsRefusedWithTheChoices) {
  for (LossKind k : {LossKind::kAuto, LossKind::kCrossEntropy, LossKind::kMse, LossKind::kNextToken})
    EXPECT_EQ(parse_loss_kind(loss_kind_name(k)), k);
  try {
    (void)parse_loss_kind("hinge");
    FAIL() << "an unknown loss was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("use auto, cross_entropy, mse or next_token"), std::string::npos);
  }
}

}  // namespace
}  // namespace partita

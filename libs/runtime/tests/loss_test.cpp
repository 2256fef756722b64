#include "partita/runtime/loss.h"

#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>

#include <string>

#include "partita/core/error.h"

namespace partita {
namespace {

std::string error_of(LossKind kind, const torch::Tensor& output, const torch::Tensor& targets) {
  try {
    (void)slice_loss(kind, output, targets, 8);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Mean over the batch of 8 (the normalizer), per element for MSE.
// The planner counts the targets make_targets draws with cost/loss.h's loss_target_bytes: the two agree for
// every loss and the shapes each takes (MSE on a 4-D output, cross-entropy on [B, C] and dense scores,
// next-token, whose targets are the input ids themselves).
TEST(Loss, TheTargetsTakeWhatThePlannerCounts) {
  const torch::Tensor ids = torch::randint(0, 50, {4, 16}, torch::kInt64);
  const struct {
    LossKind kind;
    std::vector<int64_t> output;
  } cases[] = {{LossKind::kMse, {4, 3, 8, 8}},
               {LossKind::kMse, {4, 1}},
               {LossKind::kCrossEntropy, {4, 10}},
               {LossKind::kCrossEntropy, {4, 21, 8, 8}},
               {LossKind::kNextToken, {4, 16, 50}}};
  for (const auto& c : cases) {
    const torch::Tensor targets = make_targets(c.kind, ids, c.output, 1);
    const int64_t held = c.kind == LossKind::kNextToken ? 0 : targets.numel() * targets.element_size();
    EXPECT_EQ(loss_target_bytes(c.kind, TensorMeta{c.output, DType::kFloat32}).value(), held)
        << loss_kind_name(c.kind) << " " << c.output.size() << "-D";
  }
  // --loss auto, as the planner resolves it from the first input and output.
  EXPECT_EQ(resolve_loss(LossKind::kAuto, TensorMeta{{4, 16}, DType::kInt64},
                         TensorMeta{{4, 16, 50}, DType::kFloat32}),
            LossKind::kNextToken);
  EXPECT_EQ(resolve_loss(LossKind::kAuto, TensorMeta{{4, 8}, DType::kFloat32},
                         TensorMeta{{4, 10}, DType::kFloat32}),
            LossKind::kCrossEntropy);
  EXPECT_EQ(resolve_loss(LossKind::kAuto, TensorMeta{{4, 8}, DType::kFloat32},
                         TensorMeta{{4, 1, 10}, DType::kFloat32}),
            LossKind::kMse);
}

TEST(Loss, SliceLossIsThePerSampleSumOverTheGlobalBatch) {
  const auto ones = torch::ones({4, 3});
  EXPECT_DOUBLE_EQ(slice_loss(LossKind::kMse, torch::zeros({4, 3}), ones, 8).item<double>(), 0.5);
  const auto uniform = torch::zeros({4, 5});  // every class equally likely: log(5) per sample
  EXPECT_NEAR(
      slice_loss(LossKind::kCrossEntropy, uniform, torch::zeros({4}, torch::kInt64), 8).item<double>(),
      std::log(5.0) / 2, 1e-6);
}

// Dense class scores [B, C, H, W] (a segmentation model's, with --loss cross_entropy) take one class per
// position: the loss is PyTorch's mean over samples and positions, and two slices of the batch sum to the
// whole. A first output without a class dim is refused in one line (it was LibTorch's "only batches of
// spatial targets supported").
TEST(Loss, CrossEntropyOverDenseScoresTakesOneClassPerPosition) {
  const auto targets = make_targets(LossKind::kCrossEntropy, torch::zeros({2, 3, 8, 8}), {2, 5, 4, 4}, 7);
  EXPECT_EQ(targets.sizes(), (std::vector<int64_t>{2, 4, 4}));
  EXPECT_GE(targets.min().item<int64_t>(), 0);
  EXPECT_LT(targets.max().item<int64_t>(), 5);
  EXPECT_GT(targets.max().item<int64_t>(), 0);  // drawn, not all one class
  torch::manual_seed(0);
  const auto scores = torch::randn({2, 5, 4, 4});
  const double whole = slice_loss(LossKind::kCrossEntropy, scores, targets, 2).item<double>();
  EXPECT_NEAR(whole, torch::nn::functional::cross_entropy(scores, targets).item<double>(), 1e-6);
  const double halves =
      slice_loss(LossKind::kCrossEntropy, scores.narrow(0, 0, 1), targets.narrow(0, 0, 1), 2).item<double>() +
      slice_loss(LossKind::kCrossEntropy, scores.narrow(0, 1, 1), targets.narrow(0, 1, 1), 2).item<double>();
  EXPECT_NEAR(halves, whole, 1e-6);
  try {
    (void)make_targets(LossKind::kCrossEntropy, torch::zeros({2, 3}), {2}, 7);
    FAIL() << "drew class targets for an output without classes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--loss cross_entropy needs a first output of class scores"),
              std::string::npos)
        << e.what();
  }
}

// An output whose rows depend on the data (y[y.sum(1) > 0]) no longer matches the targets drawn for its
// traced shape: one line naming both shapes, not LibTorch's batch_size message, and never MSE's silent
// broadcast.
TEST(Loss, AnOutputThatLostItsTracedShapeIsRefusedNamingBothShapes) {
  const std::string ce =
      error_of(LossKind::kCrossEntropy, torch::zeros({2, 4}), torch::zeros({8}, torch::kInt64));
  EXPECT_NE(ce.find("first output is [2, 4] where training expects one row per sample, [8]"),
            std::string::npos)
      << ce;
  const std::string mse = error_of(LossKind::kMse, torch::zeros({1, 4}), torch::zeros({8, 4}));
  EXPECT_NE(mse.find("first output is [1, 4] where training expects [8, 4]"), std::string::npos) << mse;
  EXPECT_NE(mse.find("depends on the data"), std::string::npos) << mse;
}

// A bfloat16 output's loss is summed in float32: bfloat16's 8-bit mantissa made one device's loss and two
// replicas' differ by 0.6%.
TEST(Loss, ASixteenBitOutputsLossIsSummedInFloat32) {
  const auto logits = torch::randn({8, 5}).to(torch::kBFloat16);
  const auto labels = torch::randint(0, 5, {8}, torch::kInt64);
  const auto loss = slice_loss(LossKind::kCrossEntropy, logits, labels, 8);
  EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
  const auto in_float = slice_loss(LossKind::kCrossEntropy, logits.to(torch::kFloat32), labels, 8);
  EXPECT_EQ(loss.item<float>(), in_float.item<float>());
}

// A replica or microbatch takes its samples' rows; targets of a model whose output is not one row per sample
// (4 pairs from a batch of 8) are used whole, and only for the whole batch.
TEST(Loss, SliceTargetsTakesTheSamplesRowsOrTheWholeBatchsOwnRows) {
  const auto per_sample = torch::arange(8);
  EXPECT_TRUE(slice_targets(per_sample, 8, 2, 3).equal(torch::arange(2, 5)));
  const auto per_pair = torch::arange(4);
  EXPECT_TRUE(slice_targets(per_pair, 8, 0, 8).equal(per_pair));
  EXPECT_THROW((void)slice_targets(per_pair, 8, 4, 4), InternalError);
}

}  // namespace
}  // namespace partita

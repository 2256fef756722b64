#include "partita/runtime/loss.h"

#include <torch/nn/functional/loss.h>

#include "partita/core/error.h"

namespace partita {

namespace F = torch::nn::functional;

// The planner counts these targets' bytes with cost/loss.h's loss_target_bytes (keep the two together).
torch::Tensor make_targets(LossKind kind, const torch::Tensor& batch_input,
                           const std::vector<int64_t>& output_shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  switch (kind) {
    case LossKind::kNextToken:
      return batch_input;
    case LossKind::kCrossEntropy: {
      // Scores [B, C] take one class per sample; dense scores [B, C, d1, ...] (a segmentation model's
      // per-pixel classes) one per position, [B, d1, ...], as torch.nn.functional.cross_entropy reads them.
      PARTITA_CHECK(output_shape.size() >= 2 && output_shape[1] >= 1, "--loss cross_entropy needs a first ",
                    "output of class scores [batch, classes, ...]; the model's is ",
                    c10::IntArrayRef(output_shape), "; train it with --loss mse (or auto)");
      std::vector<int64_t> shape{output_shape[0]};
      shape.insert(shape.end(), output_shape.begin() + 2, output_shape.end());
      return torch::randint(0, output_shape[1], shape, gen, torch::TensorOptions().dtype(torch::kInt64));
    }
    case LossKind::kMse:
      return torch::randn(output_shape, gen, torch::TensorOptions().dtype(torch::kFloat32));
    case LossKind::kAuto:
      break;
  }
  PARTITA_FAIL("make_targets: resolve the loss kind first");
}

torch::Tensor slice_targets(const torch::Tensor& targets, int64_t global_batch, int64_t offset,
                            int64_t count) {
  if (targets.size(0) == global_batch) return targets.narrow(0, offset, count);
  PARTITA_ASSERT(offset == 0 && count == global_batch, "targets of ", targets.size(0),
                 " rows for a batch of ", global_batch, " cannot be split (samples ", offset, "+", count,
                 ")");
  return targets;
}

torch::Tensor slice_loss(LossKind kind, const torch::Tensor& model_output, const torch::Tensor& targets,
                         int64_t normalizer_samples) {
  const double n = static_cast<double>(normalizer_samples);
  // A 16-bit output's loss is summed in float32 (as torch.autocast does): summed in bfloat16, the same
  // step's loss differed by 0.6% between one device and two replicas, bfloat16's own rounding.
  const bool half_precision =
      model_output.scalar_type() == torch::kBFloat16 || model_output.scalar_type() == torch::kHalf;
  const torch::Tensor output = half_precision ? model_output.to(torch::kFloat32) : model_output;
  const auto t = targets.to(output.device());
  // The targets were drawn for the output's traced shape. A first output whose rows depend on the data
  // (y[y.sum(1) > 0]) has another count in a later step: say so, instead of LibTorch's "Expected input
  // batch_size (2) to match target batch_size (8)", or, for MSE, a silent broadcast of one row.
  const bool fits =
      kind == LossKind::kNextToken ||
      (kind == LossKind::kCrossEntropy ? output.dim() >= 1 && output.size(0) == t.size(0) &&
                                             (t.dim() <= 1 || (output.dim() == t.dim() + 1 &&
                                                               output.sizes().slice(2) == t.sizes().slice(1)))
                                       : output.sizes() == t.sizes());
  PARTITA_CHECK(
      fits, "the model's first output is ", output.sizes(), " where training expects ",
      kind == LossKind::kCrossEntropy ? "one row per sample, " : "", t.sizes(),
      " as when it was traced: partita trains models whose outputs keep their traced shape (a number of ",
      "rows that depends on the data, as from y[mask], cannot be split or given targets)");
  switch (kind) {
    case LossKind::kCrossEntropy: {
      // The mean over the batch's samples and, for dense scores, over each sample's positions.
      const double positions = t.dim() > 1 ? static_cast<double>(t[0].numel()) : 1.0;
      return F::cross_entropy(output, t, F::CrossEntropyFuncOptions().reduction(torch::kSum)) /
             (n * positions);
    }
    case LossKind::kMse: {
      const double per_sample = static_cast<double>(output[0].numel());
      return F::mse_loss(output, t, F::MSELossFuncOptions().reduction(torch::kSum)) / (n * per_sample);
    }
    case LossKind::kNextToken: {
      const int64_t vocab = output.size(2), positions = output.size(1) - 1;
      const auto logits = output.narrow(1, 0, positions).reshape({-1, vocab});
      const auto next = t.narrow(1, 1, positions).reshape({-1});
      return F::cross_entropy(logits, next, F::CrossEntropyFuncOptions().reduction(torch::kSum)) /
             (n * static_cast<double>(positions));
    }
    case LossKind::kAuto:
      break;
  }
  PARTITA_FAIL("slice_loss: resolve the loss kind first");
}

}  // namespace partita

#pragma once
// Training losses. A step's loss is the mean over the whole global batch, exactly as on one device: every
// worker computes the *sum* of per-sample losses on its slice and divides by the global normalizer, so the
// slices' losses and gradients add up to the single-device ones (up to floating-point reassociation).
#include <string_view>

#include <torch/types.h>

#include "partita/cost/loss.h"  // LossKind, resolve_loss

namespace partita {

// Deterministic training targets for a whole batch whose output has `output_shape` (labels drawn with `seed`;
// next-token uses the batch input's ids themselves).
torch::Tensor make_targets(LossKind kind, const torch::Tensor& batch_input,
                           const std::vector<int64_t>& output_shape, uint64_t seed);

// The targets of samples [offset, offset + count) of a global batch of `global_batch`. Targets with another
// number of rows belong to a model that keeps the batch whole (its output is not one row per sample, as for
// pairs from x.chunk(2, 0)): they are returned whole, and `count` must then be the whole batch.
torch::Tensor slice_targets(const torch::Tensor& targets, int64_t global_batch, int64_t offset,
                            int64_t count);

// Sum of per-sample losses over this slice divided by `normalizer_samples` (the global batch size).
torch::Tensor slice_loss(LossKind kind, const torch::Tensor& output, const torch::Tensor& targets,
                         int64_t normalizer_samples);

}  // namespace partita

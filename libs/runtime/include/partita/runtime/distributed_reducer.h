#pragma once
// Gradient all-reduce across processes for multi-process data parallelism: flattens the trainable parameters'
// gradients into a few buckets (by dtype, up to bucket_bytes each), sums them over a DistributedGroup, and
// copies the sums back. The step's loss travels in its own one-element float64 bucket, so it is summed
// exactly. The reduction runs after the whole backward (no overlap of communication with backward yet).
#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "partita/runtime/distributed_group.h"
#include "partita/runtime/engine.h"

namespace partita {

// Which tensors go into which bucket: tensors of one dtype, in order, until a bucket would pass
// `bucket_bytes` (a tensor larger than that gets a bucket of its own). Undefined tensors are skipped.
std::vector<std::vector<size_t>> plan_buckets(const std::vector<torch::Tensor>& tensors,
                                              int64_t bucket_bytes);

struct ReducerOptions {
  int64_t bucket_bytes = int64_t{4} << 20;
  void validate() const;
};

class GlooGradientReducer final : public GradientReducer {
 public:
  // `group` must outlive the reducer.
  explicit GlooGradientReducer(DistributedGroup& group, ReducerOptions options = {});
  double reduce(const std::vector<torch::Tensor>& parameters, double local_loss, int step) override;
  int buckets_last_step() const { return buckets_last_step_; }

 private:
  DistributedGroup& group_;
  ReducerOptions options_;
  int buckets_last_step_ = 0;
};

// Test hooks, read once from the environment (documented in docs; never set them in production):
// PARTITA_FAULT_EXIT_AT_STEP=K makes rank PARTITA_FAULT_RANK (default 1) print one line and _exit(1) when it
// reaches the gradient reduction of engine step K (0-based, warm-up steps included);
// PARTITA_FAULT_HANG_AT_STEP=K makes it stall there instead (sleep until killed).
void apply_fault_hooks(int rank, int step);

}  // namespace partita

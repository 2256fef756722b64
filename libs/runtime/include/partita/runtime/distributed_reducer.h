#pragma once
// Gradient all-reduce across processes for multi-process data parallelism: the trainable parameters' gradients
// live in a few flat buckets (by dtype, up to bucket_bytes each), which are summed over a DistributedGroup, one
// collective per bucket, all in flight at once. The step's loss travels in its own one-element float64 bucket,
// so it is summed exactly.
//
// The buckets persist from step to step and, after the first reduction, each parameter's .grad() is a view
// into its bucket (like DistributedDataParallel's gradient_as_bucket_view): autograd then accumulates the next
// step's gradients in place into the bucket (the optimizer's zero_grad zeroes in place), so later reductions
// copy nothing. A gradient that is not such a view (the first step, or one that was replaced or reset to
// undefined) is copied in and then rebound; if the set of gradients or their sizes change, the buckets are
// rebuilt. The reduction runs after the whole backward (no overlap of communication with backward yet).
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
  // DDP's default bucket size. The reduction waits for the whole backward, so small buckets would buy no
  // overlap, and fewer, larger collectives are faster over Gloo (2-core VM, 17 MB of GPT gradients: 8.4-8.5 ms
  // in one bucket, 8.9-11.9 ms in 4 MiB buckets).
  int64_t bucket_bytes = int64_t{25} << 20;
  void validate() const;
};

class GlooGradientReducer final : public GradientReducer {
 public:
  // `group` must outlive the reducer.
  explicit GlooGradientReducer(DistributedGroup& group, ReducerOptions options = {});
  double reduce(const std::vector<torch::Tensor>& parameters, double local_loss, int step) override;
  int buckets_last_step() const { return buckets_last_step_; }
  // Gradient bytes copied into the buckets by the last reduce (0 once every gradient is a bucket view).
  int64_t bytes_copied_last_step() const { return bytes_copied_last_step_; }
  // How many times the buckets were (re)built.
  int bucket_rebuilds() const { return rebuilds_; }

 private:
  struct Bucket {
    std::vector<size_t> members;  // parameter indices
    std::vector<int64_t> numels;  // their gradients' element counts when the bucket was built
    torch::Tensor flat;
  };
  DistributedGroup& group_;
  ReducerOptions options_;
  std::vector<Bucket> buckets_;
  int buckets_last_step_ = 0;
  int64_t bytes_copied_last_step_ = 0;
  int rebuilds_ = 0;
};

// Test hooks, read once from the environment (documented in docs; never set them in production):
// PARTITA_FAULT_EXIT_AT_STEP=K makes rank PARTITA_FAULT_RANK (default 1) print one line and _exit(1) when it
// reaches the gradient reduction of engine step K (0-based, warm-up steps included);
// PARTITA_FAULT_HANG_AT_STEP=K makes it stall there instead (sleep until killed).
void apply_fault_hooks(int rank, int step);

}  // namespace partita

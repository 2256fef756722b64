#pragma once
// Gradient all-reduce across processes for multi-process data parallelism: the trainable parameters'
// gradients live in a few flat buckets (by dtype, up to bucket_bytes each), which are summed over a
// DistributedGroup, one collective per bucket (through Gloo all in flight at once; through shared memory,
// between the ranks of one host, one after another). The step's loss travels in its own
// one-element float64 bucket, so it is summed exactly.
//
// The buckets persist from step to step and, after the first reduction, each parameter's .grad() is a view
// into its bucket (like DistributedDataParallel's gradient_as_bucket_view): autograd then accumulates the
// next step's gradients in place into the bucket (the optimizer's zero_grad zeroes in place), so later
// reductions copy nothing. A gradient that is not such a view (the first step, or one that was replaced or
// reset to undefined) is copied in and then rebound; if the set of gradients or their sizes change, the
// buckets are rebuilt.
//
// Overlap with backward (GradientReducer::begin_backward, used by the engine for one replica of a
// data-parallel plan): the buckets hold the parameters in reverse order (roughly the order backward finishes
// them), the first one at most first_bucket_bytes, like DDP's. From the second step on (the buckets exist),
// when the gradients that are defined are exactly the buckets' members, the engine's hooks report each
// parameter whose gradient is final; a bucket whose members are all final is all-reduced at once, on the
// reducer's communication thread, in bucket order (every rank launches the same buckets in the same order: a
// bucket waits for the ones before it). finish() launches the buckets left (members that got no gradient this
// step keep theirs, zeros after zero_grad, as the synchronous path does), then sums the loss and any gradient
// that appeared outside the buckets (the next step rebuilds them), and waits. Otherwise, or with one bucket
// (it could only start at the end of backward), the reduction runs after the whole backward (reduce()).
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <torch/types.h>

#include "partita/runtime/distributed_group.h"
#include "partita/runtime/engine.h"

namespace partita {

// Which tensors go into which bucket: tensors of one dtype, in order, until a bucket would pass
// `bucket_bytes` (a tensor larger than that gets a bucket of its own). Undefined tensors are skipped.
std::vector<std::vector<size_t>> plan_buckets(const std::vector<torch::Tensor>& tensors,
                                              int64_t bucket_bytes);
// The same over the tensors in reverse order (the last tensor first), the first bucket of each dtype at most
// `first_bucket_bytes`: the order in which backward tends to finish parameters' gradients.
std::vector<std::vector<size_t>> plan_buckets_reversed(const std::vector<torch::Tensor>& tensors,
                                                       int64_t first_bucket_bytes, int64_t bucket_bytes);

struct ReducerOptions {
  // DDP's default bucket size. The reduction waits for the whole backward, so small buckets would buy no
  // overlap, and fewer, larger collectives are faster over Gloo (2-core VM, 17 MB of GPT gradients: 8.4-8.5
  // ms in one bucket, 8.9-11.9 ms in 4 MiB buckets).
  int64_t bucket_bytes = int64_t{25} << 20;
  // DDP's first bucket (1 MiB): the gradients backward finishes first start their all-reduce early.
  // Capped at bucket_bytes.
  int64_t first_bucket_bytes = int64_t{1} << 20;
  bool overlap = true;  // false: always reduce after the whole backward
  void validate() const;
};

class DistributedGradientReducer final : public GradientReducer {
 public:
  // `group` must outlive the reducer.
  explicit DistributedGradientReducer(DistributedGroup& group, ReducerOptions options = {});
  ~DistributedGradientReducer() override;
  DistributedGradientReducer(const DistributedGradientReducer&) = delete;
  DistributedGradientReducer& operator=(const DistributedGradientReducer&) = delete;
  double reduce(const std::vector<torch::Tensor>& parameters, double local_loss, int step) override;
  // True when overlap is on and the parameters make at least two buckets (one bucket can only start after
  // the whole backward). Measured: hooks on a one-bucket model (zoo CNN, 2 processes) cost 0.73x vs 0.94x of
  // DDP's throughput without them.
  bool can_overlap(const std::vector<torch::Tensor>& parameters) const override;
  bool begin_backward(const std::vector<torch::Tensor>& parameters, int step) override;
  void on_gradient_ready(size_t index) override;
  double finish(const std::vector<torch::Tensor>& parameters, double local_loss, int step) override;
  void abandon() noexcept override;
  // True for a gradient that lives in one of the buckets (reduce() binds each member's gradient to its slot).
  bool holds(const torch::Tensor& grad) const override;
  int buckets_last_step() const { return buckets_last_step_; }
  // Buckets whose all-reduce started during the last step's backward (0 when it did not overlap).
  int buckets_overlapped_last_step() const { return overlapped_last_step_; }
  // Gradient bytes copied into the buckets by the last reduce (0 once every gradient is a bucket view).
  int64_t bytes_copied_last_step() const { return bytes_copied_last_step_; }
  // How many times the buckets were (re)built.
  int bucket_rebuilds() const { return rebuilds_; }

 private:
  struct Bucket {
    std::vector<size_t> members;  // parameter indices
    std::vector<int64_t> numels;  // their gradients' element counts when the bucket was built
    std::vector<int64_t> starts;  // their first elements in flat
    torch::Tensor flat;
  };
  void mark(int step);
  // Makes parameters[i]'s gradient (member k of bucket b) live in its slot: copies it in unless it already
  // does; the new alias is bound after the sum (rebind_).
  void copy_into_slot(const std::vector<torch::Tensor>& parameters, size_t b, size_t k);
  void launch(size_t b);  // hands bucket b to the communication thread
  void drain();           // waits until the communication thread is idle; rethrows its error
  void communicate();     // the communication thread
  void stop_thread() noexcept;

  DistributedGroup& group_;
  ReducerOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> slot_of_;  // parameter -> (bucket, member); bucket npos: none
  int buckets_last_step_ = 0;
  int overlapped_last_step_ = 0;
  int64_t bytes_copied_last_step_ = 0;
  int rebuilds_ = 0;
  int marked_step_ = -1;
  std::vector<std::pair<size_t, torch::Tensor>> rebind_;
  int64_t copied_ = 0;
  // The overlapped step (begin_backward .. finish), on the backward's thread.
  bool armed_ = false;
  int step_ = 0;
  std::vector<torch::Tensor> parameters_;
  std::vector<char> ready_;        // per parameter
  std::vector<size_t> remaining_;  // per bucket: members not final yet
  size_t next_launch_ = 0;         // buckets launched so far (a prefix)
  int launched_in_backward_ = 0;
  // The communication thread: all-reduces the queued buckets in order.
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<torch::Tensor> queue_;  // tensors to sum, in order
  size_t in_flight_ = 0;             // queued or running
  bool stopping_ = false;
  std::exception_ptr error_;
};

// Test hooks, read once from the environment (documented in docs; never set them in production):
// PARTITA_FAULT_EXIT_AT_STEP=K makes rank PARTITA_FAULT_RANK (default 1) print one line and _exit(1) when it
// reaches the gradient reduction of engine step K (0-based, warm-up steps included; a pipeline stage's
// transport and a tensor group's link fire them at the step's start instead);
// PARTITA_FAULT_HANG_AT_STEP=K makes it stall there instead (sleep until killed).
void apply_fault_hooks(int rank, int step);

}  // namespace partita

#pragma once
// Per-node forward (and backward) times on a local device by single-op replay.
//
// Method: run the model once through the executor with an observer that records every value (with grad mode
// on for training, so each tensor's requires_grad is the real one). Then, for every node: rebuild its inputs
// from the record (training: as fresh leaves that require grad exactly where the real run did; in-place ops
// get a clone so a leaf is never modified in place), run it `timing.warmup` times, then time it until the
// per-node budget or max_repeats is reached, and keep the median. Backward: each repeat runs the node forward
// (untimed) and times torch::autograd::grad of its differentiable outputs (grad outputs of ones) with respect
// to its inputs that require grad. Setup work (clones, the forward before a backward) is never timed.
//
// Cache: an entry keeps the median, the spread of the samples (interquartile range / median) and when it was
// measured. On a shared machine one measurement can be taken while a neighbour is busy, so an entry is reused
// only while it is younger than max_cache_age and its spread is at most max_cached_spread (or its time is too
// short to matter, under min_recheck_time); otherwise the node is measured again and the entry replaced.
// Entries written before spreads were recorded are measured again.
//
// In situ (in_situ_runs > 0, the default): replay times an op alone, with its inputs hot in cache and the
// allocator warm, and on the conv nets of the zoo the replayed forward times summed to ~20% less than the
// model's real forward. So the whole model also runs (3 untimed runs, then at least in_situ_runs timed ones
// and more until in_situ_budget is spent, at most in_situ_max_runs) with an observer timing every node where
// it really runs, and a node's forward time is its in-situ median. Backward runs as one autograd call, so its
// in-situ total is split over the nodes in proportion to their replayed backward times. Without
// in_situ_update the backward is torch::autograd::grad with respect to the parameters (.grad untouched).
// With it, each in-situ run is the caller's whole training step: the loss (in_situ_loss of the graph's
// outputs; without one the sum of the floating outputs), .backward() into the parameters' .grad, then
// in_situ_update; loss, backward and update are timed apart
// (in_situ_loss, in_situ_backward, in_situ_update) and the parameters' values and .grad are put back after
// every run, outside the clock. Why the update belongs in the pass: a part's time depends on what ran
// before it. On the 2-core VM the update's OpenMP threads keep spinning and slow OpenBLAS in the next
// forward (mlp, 2 threads: forward 0.051 ms after autograd::grad alone, 0.082 ms after an SGD update).
// In-situ times are not cached (they depend on the neighbours); the replayed ones are.
//
// Assumptions: an op's time depends only on (op, input shapes/dtypes/contiguity, constant arguments, device,
// threads), which is the cache key (device_key should name anything else that changes times, such as the
// OpenBLAS thread count); replay runs with warm caches (inputs reused), so it can be slightly
// faster than in a real step. The AccumulateGrad of parameters and the loss are not nodes and not timed.
//
// Thread safety: changes nothing global except the intra-op thread count, which the caller sets beforehand;
// do not run two profilers at once.
#include <functional>
#include <string>
#include <vector>

#include <torch/script.h>

#include "partita/cost/compute.h"
#include "partita/torch_bridge/executor.h"
#include "partita/torch_bridge/timing.h"

namespace partita {

struct OpProfileOptions {
  bool backward = false;  // also time backward (training)
  TimingOptions timing{1, 3, 25, Seconds(0.03), {}};
  std::string device_key = "cpu";   // goes into the cache key with the thread count (add e.g. "|blas1")
  std::string cache_path;           // JSON cache file; "" = no cache
  double max_cached_spread = 0.25;  // re-measure a cached entry whose relative spread is larger
  Seconds min_recheck_time{50e-6};  // ... unless its time is below this (noise there costs nothing)
  Seconds max_cache_age{7 * 24 * 3600.0};  // re-measure entries older than this
  int in_situ_runs = 5;                    // whole-model timed runs, at least (0: replay only)
  int in_situ_max_runs = 200;              // ... at most
  Seconds in_situ_budget{0};               // ... more runs (beyond in_situ_runs) while this lasts
  // Training only: the rest of the caller's step after backward (e.g. an optimizer update over the
  // parameters' .grad); see "In situ" above. Empty: in-situ backward by autograd::grad, no update.
  std::function<void()> in_situ_update;
  // Training with in_situ_update: the step's loss (a scalar) from the graph's outputs, in graph order; part
  // of the timed loss. Empty: the sum of the floating outputs.
  std::function<torch::Tensor(const std::vector<c10::IValue>& outputs)> in_situ_loss;
  // Called after every in-situ run, outside the clock, with whether that run was timed (false: a warm-up).
  // Lets a caller interleave a measurement of its own with the in-situ runs, so that both sample the same
  // stretch of a machine whose speed drifts (partita estimate --measure times the real step here).
  std::function<void(bool timed)> between_in_situ_runs;
  void validate() const;
};

struct OpProfileResult {
  std::vector<NodeTimes> times;  // one per node, for apply_measured_times
  int cache_hits = 0;
  int measured = 0;
  int remeasured = 0;  // of `measured`: cached entries that were too noisy or too old
  Seconds seconds_taken{0};
  // With in_situ_runs > 0: the replayed totals the in-situ pass replaced, and the in-situ backward total.
  Seconds replayed_forward{0};
  Seconds replayed_backward{0};
  Seconds in_situ_backward{0};
  // With in_situ_update (training): the in-situ medians of building the loss and of the update; they are
  // parts of the step that are not nodes, so they are not in `times`.
  Seconds in_situ_loss{0};
  Seconds in_situ_update{0};
  // With in_situ_runs > 0: the in-situ median of a forward's wall time minus its nodes' times in the same run
  // (building the environment, the executor's loop, releasing values). Once per forward, not in `times`.
  Seconds in_situ_forward_outside_nodes{0};
};

// Profiles every node of executor.model() on `inputs` (one per user input, on the executor's device).
OpProfileResult profile_ops(const Executor& executor, const std::vector<c10::IValue>& inputs,
                            const OpProfileOptions& options);

// cache_dir()/ops-<machine key>.json for this machine.
std::string default_op_cache_path();

}  // namespace partita

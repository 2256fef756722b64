#pragma once
// StageModel: the cost of running a contiguous node range [first, last] on one device, in O(1) from prefix
// sums. Shared by every strategy, the brute-force checkers and the simulator, so they all agree on one cost
// model.
//
// Assumptions (stated once here):
//   - compute: a node's time on `samples` samples is its fixed part (NodeTimes::forward_fixed /
//     backward_fixed: per-call launch and dispatch, paid in full by every run of the node however few its
//     samples) plus the rest of its table time (at graph_batch samples) scaled linearly with samples
//     (roofline regime). A microbatch smaller than the graph's batch so costs more per sample: what keeps
//     the planner from splitting a step into ever more microbatches. A node whose outputs do not depend on
//     the batch (graph/analysis.h's batch_dependent: weights', constants' and shared inputs' math) is all
//     fixed: every replica and microbatch computes it whole.
//   - bytes (activations, boundaries, what is alive): a storage derived from the batch-carrying input holds
//     its bytes at graph_batch samples scaled linearly with the samples; one that does not depend on the
//     batch (batch_dependent again: a merged weight W + A @ B, a shared input's mask) is held whole by every
//     replica and microbatch (SampleBytes::fixed). Where the most over a range's nodes is taken, its node
//     may depend on the samples (RangeLineMax).
//   - weights (parameters and buffers) follow the engine's placement (runtime/engine.cpp), given per device
//     by StageLoad::weights: on a CPU device (WeightHome::kHost) a weight counts at the first node that reads
//     it, so tied weights count once, in the earliest stage, with their gradients and optimizer state; a
//     device with memory of its own holds every weight its range reads (copies of those other stages read
//     too) and their gradients, and the optimizer state of the parameters only its range reads when it is the
//     stage's one device (kOwn); a replica of a data-parallel group (kCopies) holds no optimizer state: the
//     host keeps the state of parameters several workers read. The host's share is not counted here.
//   - activations a training stage keeps per microbatch (activation): the tensors
//     entering the range, the storages its nodes produce that autograd saves for backward (cost/memory.h's
//     model, attributed to the producing node so that ranges sum; a storage saved only by a later stage is
//     this stage's result, which the engine keeps for backward anyway), and the unsaved storages crossing
//     the range's end (results sent on). A saved result counts once.
//     The last stage of a training step keeps no graph output that no node saved (the engine computes the
//     loss from them and drops them), but what the engine's loss saves for backward, taken as one tensor of
//     the floating graph outputs' size (cross-entropy's log-softmax, 127/128 of the GPT's logits for the
//     next token; MSE's output itself), and the targets of the default loss (`run --loss auto`;
//     cost/loss.h's loss_target_bytes): MSE's, a float32 tensor of the first output's shape, matter (a
//     one-layer model with a 4 MiB output was predicted 22% under without them); the engine makes the whole
//     batch's at once (host_memory.cpp counts the rest), counted here per microbatch in flight.
//   - the loss's backward (training, a range ending the graph): it runs before any node's backward, beside
//     the activations, and holds two tensors of the first output's size (cross-entropy: the gradients of the
//     log-softmax and of the output; MSE: the difference and the output's gradient) with no gradient of
//     that backward made yet; once it ran, what the loss saved is freed for the nodes' backwards. (A 64-128-
//     4096 MLP on 64 samples, one microbatch, cross-entropy, SGD, one CPU: 7.14 MiB predicted against 5.14
//     measured when the output and the loss's tensor were kept through the whole backward, 5.14 after; on
//     256 samples 16.38 against 14.24, then 14.24: `HIDDEN=128 BATCH=64 OPTIMIZER=sgd
//     bench/loss_target_memory.sh`.)
//   - inference keeps no activations: a stage's peak is the most bytes alive at once while one of its nodes
//     runs (live_peak), every storage alive from its producer (the range's start for what enters
//     it) to its last reader (graph outputs to the end), views and in-place results sharing their input's;
//     plus what the running node's kernel holds beyond its inputs and outputs on the device running it
//     (cost/memory.h's kernel_scratch_bytes: oneDNN's reorders or the native im2col buffer of a CPU
//     convolution, max pooling's dropped indices), a load without a device taken as a GPU's.
//   - boundary bytes after node i: every intermediate value produced at or before i and read after i.
//   - workspace (training): at the peak of a microbatch's backward, beyond its activations: the largest
//     over the range's nodes of a node's non-weight inputs + outputs that get a gradient (the gradients in
//     flight there; not a user input's or an integer tensor's; only the outputs where the inputs' gradients
//     are views of the output's: concatenation and reshaping views, cost/memory.h's backward_makes_views)
//     less what the nodes after it saved (backward has freed that by then). A node whose kernel takes
//     working memory in its backward on the load's device holds it beside that (cost/memory.h's
//     backward_kernel_scratch_bytes: a CPU convolution in oneDNN, a copy of its input; in the native
//     kernel, its column buffer).
//   - gradients (training): the engine starts a step without them (set to none), and backward makes a
//     parameter's gradient when it passes the parameter's reader. When a device runs one microbatch per
//     step (StageLoad::microbatches == 1), the gradients of parameters that only nodes before the backward's
//     current node read are not there yet: the peak is the largest over the range's nodes of workspace
//     less what later nodes saved less those gradients (backward_peak), which may come early in
//     backward, where few gradients exist. A weight several nodes read counts from the backward's start
//     (the last reader makes it first); once backward ends every gradient is there, as in model_state. With
//     more microbatches the same holds for the device's first backward of the step, which runs with the
//     most microbatches in flight (GPipe: all of them); the later ones run beside every gradient, with as
//     many microbatches in flight (1F1B's steady state) or one fewer (every forward done): the peak is the
//     larger of the two. Microbatches not known (0): every gradient counts for the whole step. Where a
//     gradient is there already (a later backward; every one under `partita launch`, whose gradients
//     stay), autograd makes the new one first and then adds it in: a node's moment in such a backward also
//     holds the gradients of the trainable weights it reads, unless they are views of its output's gradient
//     (an add of a weight of the output's shape, a view), which the workspace counts already (each copy at
//     its own reader, as scripts/memory-timeline showed: a 64-64-4096 MLP, 4 microbatches, MSE, one CPU,
//     10.17 MiB measured, 11.17 predicted with its 1 MiB weight's copy beside the loss's backward).
//   - returned gradients (training, a range before the last): the gradients of what the range sends on
//     (values produced in it, read after it, that get a gradient) come back before its backward and stay
//     alive through all of it (autograd's graph root holds them: runtime's backward_from.h), beside every
//     node's workspace. A run of the whole graph frees such a gradient at its producer, whose workspace
//     counts it as its output's gradient: there it is not counted again, unless a node of the range reads
//     the value too (autograd then sums the gradients into a new tensor). (Launched 2-stage pipelines on
//     cpu:0 + cpu:1, the first rank: the GPT with 4 microbatches, 51.50 MiB measured, 50.51 predicted
//     without them, 51.51 with; the branchy model with one, 3.11 measured, 4.10 predicted when the host
//     added them beside a peak at their producer, 3.10 now: bench/pipeline_rank_memory.sh.)
//   - the forward (training): while node i runs, the tensors entering the range, what the range's nodes up
//     to i saved, the unsaved storages alive at i (whole-graph lifetimes, graph inputs left to the first)
//     and i's kernel working memory in a training forward (cost/memory.h's training_kernel_scratch_bytes: a
//     recurrent layer's projected sequence), beside the other microbatches in flight; no gradient of the
//     step exists at the device's first forwards, every one at the later ones of 1F1B's steady state
//     (forward_peak). It is the peak only where a kernel's working memory is large (recurrent layers);
//     elsewhere backward's start holds more.
//   - memory savings (training only): full checkpointing keeps only the stage input of every microbatch in
//     flight and recomputes the rest in backward; activation offload copies what the range produces and
//     saves itself (offloaded) to host memory as the forward saves it and back when the backward
//     needs it, so each microbatch in flight keeps the rest (inputs, results). Either way one microbatch's
//     activations are on the device at once while its backward runs (an upper bound: a copy frees the
//     device tensor once it is on the host). The two are not combined: with checkpointing the forward saves
//     nothing but the stage input, so there is nothing left to offload.
//   - activation offload copies once each way per microbatch, synchronously on the stage's device (no
//     overlap with compute), at options.host_bandwidth with no latency term (SearchOptions has none).
//   - offloaded optimizer state and activations live in host memory, which memory() does not count.
//   - offload applies to devices with their own memory; a CPU device's memory is host memory, so a stage on
//     one never offloads (savings_choices).
// Thread safety: immutable after construction; const methods may be called concurrently.
#include <span>
#include <string>
#include <vector>

#include "partita/cost/compute.h"
#include "partita/cost/memory.h"
#include "partita/graph/graph.h"
#include "partita/hardware/device.h"
#include "partita/search/plan.h"
#include "partita/search/range_line_max.h"
#include "partita/search/search_options.h"

namespace partita {

// Bytes held on a number of samples: a part that grows with each sample, and a part every run holds whole
// however few its samples (storages that do not depend on the batch: a merged weight W + A @ B, a shared
// input's mask).
struct SampleBytes {
  double per_sample = 0;
  double fixed = 0;
  double at(double samples) const { return per_sample * samples + fixed; }
};
inline SampleBytes operator+(SampleBytes a, SampleBytes b) {
  return {a.per_sample + b.per_sample, a.fixed + b.fixed};
}
inline SampleBytes operator-(SampleBytes a, SampleBytes b) {
  return {a.per_sample - b.per_sample, a.fixed - b.fixed};
}

// The memory savings a stage runs with.
struct Savings {
  Checkpointing checkpointing = Checkpointing::kNone;
  Offload offload = Offload::kNone;
};

// Where the weights a device of a stage reads live while the engine runs it (see the assumptions above).
enum class WeightHome {
  kHost,    // a CPU device: the host's tensors, each counted in the range of its first reader
  kOwn,     // the one device of a stage, with memory of its own: keeps the parameters only its range reads
  kCopies,  // one of several devices of a stage, with memory of their own: copies, state on the host
};

// What one device of a stage holds and does per microbatch.
struct StageLoad {
  NodeId first = 0;
  NodeId last = 0;
  int samples = 1;    // samples of each microbatch on this device
  int in_flight = 1;  // microbatches whose activations are kept at once (1F1B: stages to the end; GPipe: all)
  Checkpointing checkpointing = Checkpointing::kNone;
  Offload offload = Offload::kNone;
  WeightHome weights = WeightHome::kHost;
  int device = -1;  // the cluster index of the device (its kernels' working memory); -1: not known
  // Microbatches this device runs per step; 0: not known. Training with one: gradients appear during its
  // backward (see above); otherwise they count for the whole step.
  int microbatches = 0;
};

// Training, a device that runs `microbatches` (>= 2) per step and keeps up to `in_flight` of them at once:
// how many it keeps when its first backward starts, and at most when a later one does (see the assumptions
// above).
struct BackwardsInFlight {
  int first = 0;
  int later = 0;
};
BackwardsInFlight backwards_in_flight(int in_flight, int microbatches);

class StageModel {
 public:
  // Throws partita::Error when the cost table lacks a row for a cluster device's spec or has the wrong size.
  StageModel(const Graph& graph, const Cluster& cluster, const CostTable& table,
             const SearchOptions& options);
  // This model over `cluster`, which lists the same devices (ids and specs, in order) and may link them
  // otherwise (the links between a launched plan's processes, process_layout.h): nothing here depends on the
  // links, so nothing is recomputed. `cluster` must outlive the copy. Throws partita::Error when the devices
  // differ.
  StageModel over_links_of(const Cluster& cluster) const;

  const Graph& graph() const { return *graph_; }
  const Cluster& cluster() const { return *cluster_; }
  const SearchOptions& options() const { return options_; }
  bool training() const { return options_.mode == Mode::kTraining; }
  int num_nodes() const { return graph_->num_nodes(); }
  int num_devices() const { return static_cast<int>(cluster_->devices.size()); }
  int graph_batch() const { return graph_batch_; }
  // Cost table row of cluster device `device` (its index in cluster.devices).
  int spec_of(int device) const { return device_spec_[static_cast<size_t>(device)]; }
  int device_index(const std::string& id) const;  // throws when absent
  // min(device memory, options.memory_limit); a device with unknown memory (0) is capped only by the limit.
  Bytes memory_cap(int device) const;

  // Per-microbatch times of `samples` samples on spec row `spec`: fixed + per sample x samples.
  Seconds forward(int spec, NodeId first, NodeId last, double samples) const;
  Seconds backward(int spec, NodeId first, NodeId last, double samples) const;
  // Their parts: what grows with each sample, and what every run pays once.
  Seconds forward_per_sample(int spec, NodeId first, NodeId last) const;
  Seconds backward_per_sample(int spec, NodeId first, NodeId last) const;
  Seconds forward_fixed(int spec, NodeId first, NodeId last) const;
  Seconds backward_fixed(int spec, NodeId first, NodeId last) const;
  // forward (inference) or forward + backward (+ forward again when checkpointing, + the activation copies
  // to the host and back when offloading activations) for one microbatch.
  Seconds microbatch_time(int spec, const StageLoad& load) const;
  // Seconds to copy one microbatch's saved activations over the host link one way: the forward pays it once
  // and the backward once (0 unless training with activation offload).
  Seconds activation_transfer(const StageLoad& load) const;
  // Whole-graph time per sample at the graph's batch (forward, plus backward when training; fixed parts
  // shared by the batch): the device's "speed" is its inverse.
  Seconds sample_time(int spec) const;

  // Weights counted at their first reader: each weight in exactly one range of a partition.
  Bytes parameter_bytes(NodeId first, NodeId last) const;  // trainable + buffers
  Bytes trainable_bytes(NodeId first, NodeId last) const;
  // Weights some node of [first, last] reads (tied weights in every range that reads them).
  Bytes read_parameter_bytes(NodeId first, NodeId last) const;  // trainable + buffers
  Bytes read_trainable_bytes(NodeId first, NodeId last) const;
  // Trainable parameters no node outside [first, last] reads.
  Bytes owned_trainable_bytes(NodeId first, NodeId last) const;
  // Training: the gradients a device of `load` holds (as its weights: the host's, or those its range reads).
  Bytes gradient_bytes(const StageLoad& load) const;
  // How device `device` holds the weights of a stage on `stage_devices` devices (see WeightHome).
  WeightHome weight_home(int device, int stage_devices) const;
  SampleBytes boundary(NodeId after) const;  // 0 after the last node
  Bytes boundary_bytes(NodeId after, int samples) const;
  // Whether device `device` (index in cluster.devices) has memory of its own to offload from: not a CPU.
  bool can_offload(int device) const;
  // The savings a stage on `devices` may run with, plain first: only Savings{} for inference; when training
  // {none, full checkpointing} x {none, optimizer state, activations, both} without checkpointing combined
  // with activation offload, and without any offload when one of `devices` is a CPU.
  std::vector<Savings> savings_choices(const std::vector<int>& devices) const;

  // Memory of one device holding `load` (see the assumptions above).
  Bytes memory(const StageLoad& load) const;
  // The model-state part of memory(load): weights and buffers, plus gradients and (unless offloaded or kept
  // on the host) optimizer state when training, as load.weights says.
  Bytes model_state(const StageLoad& load) const;
  // Seconds per step to move offloaded optimizer state to the host and back (0 without offload).
  Seconds offload_time(const StageLoad& load) const;

  // Bytes per sample and per run: activations a training stage [first, last] keeps per microbatch (inputs,
  // saved storages, results), the storages its nodes produce that autograd saves, the tensors entering at
  // `first` (see above).
  SampleBytes activation(NodeId first, NodeId last) const;
  SampleBytes saved(NodeId first, NodeId last) const;
  // What activation offload frees: the storages the range saves that die inside it (not its inputs, nor
  // results sent on or saved again later; each part clamped at 0). The engine may copy saved results too,
  // which costs time and frees nothing: not modelled.
  SampleBytes offloaded(NodeId first, NodeId last) const;
  SampleBytes input(NodeId first) const;
  // Training: the part of a range's input that a CPU device (a cluster index) holds once, however many
  // microbatches it keeps: the shared user inputs (Value::shared), one tensor of the caller's that the engine
  // hands every microbatch as it is, in the input of a range starting the graph. A GPU device gets a copy
  // with each microbatch (engine.cpp moves it), so 0 there, as for an unknown device (-1).
  double shared_input_once(NodeId first, int device) const;
  // Training: what the engine's loss saves for backward, per sample (one tensor of the floating graph
  // outputs' size, see above); 0 for inference.
  double loss_per_sample() const { return loss_per_sample_; }
  // Whether a range ending at `last` computes the loss (training, the graph's last node).
  bool ends_training(NodeId last) const;
  // Training, a range ending the graph: the graph outputs no node saves, which activation() leaves out (the
  // engine drops them once the loss has them); nothing for other ranges.
  SampleBytes dropped_outputs(NodeId last) const;
  // Training, a range ending the graph: what the loss of one microbatch of `samples` frees once its backward
  // ran (loss_per_sample less the targets, which the caller keeps), and what that backward holds beyond the
  // range's activations as it runs (the moment the loss's backward is at its largest: two tensors of the
  // first output's size; cost/loss.h loss_backward_bytes); 0 for other ranges.
  double loss_freed(NodeId last, double samples) const;
  double loss_backward_moment(NodeId last, double samples) const;
  // Training: the gradients in flight while backward runs `node` (see workspace above), and the most of it
  // over [first, last] on `samples` samples.
  SampleBytes workspace(NodeId node) const;
  double most_workspace(NodeId first, NodeId last, double samples) const;
  // Inference: the most bytes alive at once while a node of the range runs on `samples` samples, without the
  // kernels' working memory (live_peak), and with it on `device` (-1: not known; peak_live).
  double live_peak(NodeId first, NodeId last, double samples) const;
  double peak_live(NodeId first, NodeId last, int samples, int device) const;
  KernelSite kernel_site(int device) const;  // device -1: a site not known
  // The graph's nodes whose kernels take working memory (cost/memory.h's kernel_scratch), ascending.
  const std::vector<KernelScratch>& kernels() const { return scratch_; }
  // Training: the workspace less what the range's later nodes saved, at its most (see above).
  double backward_workspace(NodeId first, NodeId last, double samples) const;
  // Training: the gradients a range [first, last] gets back for what it sends on (see returned gradients
  // above), one entry per producer, ascending: their bytes, and the part of them the producer's workspace
  // counts already (values no node of the range reads besides). None for a range ending the graph.
  struct ReturnedGradient {
    NodeId producer = kNoNode;
    SampleBytes sent;
    SampleBytes at_producer;
  };
  std::span<const ReturnedGradient> returned_gradients(NodeId first, NodeId last) const;
  // Training: the peak of the backward of `load`, beyond its activations and model_state(load): the
  // workspace less what later nodes saved, the gradients returned to it (see above), and when
  // load.microbatches == 1 less the gradients backward has not made yet at that node (`unmade_gradients`,
  // which may make `beyond_state` negative), otherwise with the fresh gradients of the weights the node reads
  // (see gradients above).
  struct BackwardPeak {
    double beyond_state = 0;
    Bytes unmade_gradients{0};
  };
  BackwardPeak backward_peak(const StageLoad& load) const;  // first_of_step: load.microbatches == 1
  // The same for one backward of the step: `first_of_step` for the device's first (no gradient of the stage
  // exists yet as it starts: the engine sets them to none), else every gradient is there.
  BackwardPeak backward_peak(const StageLoad& load, bool first_of_step) const;
  // The same backward over time, for a host that runs several devices at once (the host's figure of a
  // pipeline in one process): from its start, in order, when each moment starts (a fraction of the range's
  // backward time on device spec `spec`) and what it holds beyond the activations in flight and the state
  // then, counted as backward_peak counts it. A range ending the graph starts with the loss's backward
  // (taking no time). Nodes run one after the other from the last; at most `moments` moments, each a run of
  // nodes holding their most, so the most of the moments is backward_peak's beyond_state.
  struct Moment {
    double start = 0;  // in [0, 1)
    double bytes = 0;
  };
  std::vector<Moment> backward_moments(int spec, const StageLoad& load, bool first_of_step,
                                       int moments) const;
  // Training: the most bytes one microbatch of `load` holds while a node of its forward runs (see above),
  // its kernel's working memory included.
  double forward_peak(const StageLoad& load) const;
  // The same forward over time, as backward_moments: the most of the moments is forward_peak.
  std::vector<Moment> forward_moments(int spec, const StageLoad& load, int moments) const;

 private:
  const Graph* graph_;
  const Cluster* cluster_;
  SearchOptions options_;
  int graph_batch_ = 1;
  std::vector<int> device_spec_;
  std::vector<std::vector<double>> fwd_prefix_, bwd_prefix_;  // [spec][n+1], per sample, fixed parts excluded
  std::vector<std::vector<double>> fwd_fixed_prefix_, bwd_fixed_prefix_;  // [spec][n+1], per run
  std::vector<double> param_prefix_, trainable_prefix_;                   // [n+1]
  std::vector<SampleBytes> saved_prefix_;                                 // [n+1]
  std::vector<double> unshared_trainable_prefix_;  // [n+1]: trainable weights only one node reads
  // Weights read by two or more nodes (readers ascending), and [i] those whose first reader is before node i
  // and last reader at or after it (i in 0..n): what a range starting or ending at a cut may share.
  struct SharedWeight {
    double bytes = 0;
    bool trainable = false;
    std::vector<NodeId> readers;
  };
  std::vector<SharedWeight> shared_;
  std::vector<std::vector<int>> spanning_;
  std::vector<SampleBytes> boundary_;       // [n], after node i
  std::vector<SampleBytes> unsaved_cross_;  // [n]: storages no node saves, alive across node i's end
  std::vector<SampleBytes> saved_cross_;    // [n]: saved storages produced <= i, alive after i
  SampleBytes graph_input_;
  double shared_inputs_ = 0;    // bytes of the shared user inputs (part of graph_input_.fixed)
  double loss_per_sample_ = 0;  // training: what the loss saves (the graph outputs' size) and its targets
  double loss_kept_per_sample_ = 0;      // training: loss_per_sample_ less the targets
  double loss_backward_per_sample_ = 0;  // training: the loss's backward beyond loss_per_sample_
  std::vector<SampleBytes> workspace_;   // [n]: gradients in flight at node i's backward
  // Lines over the nodes (per sample: the slope; per run: the intercept), for maxima whose node depends on
  // the samples. workspace_lines_: the workspace; later_backward_: workspace + saved by nodes <= i;
  // first_backward_: the same less the unshared trainable prefix (gradients not made yet); later_afresh_:
  // later_backward_ plus the trainable weights the node reads (their gradients made afresh).
  RangeLineMax workspace_lines_, later_backward_, first_backward_, later_afresh_;
  std::vector<SampleBytes> later_afresh_at_, first_backward_at_;  // [n]: the lines' values by node
  std::vector<std::vector<ReturnedGradient>> returned_;  // [c]: returned_gradients of a range ending at c
  std::vector<SampleBytes> live_;                        // [n]: bytes alive while node i runs (inference)
  RangeLineMax live_lines_;
  // Training forward: saved by nodes <= i plus the unsaved storages alive at i (no graph inputs).
  std::vector<SampleBytes> forward_;
  RangeLineMax forward_lines_;
  std::vector<KernelScratch> scratch_;  // nodes whose kernels take working memory, ascending
};

}  // namespace partita

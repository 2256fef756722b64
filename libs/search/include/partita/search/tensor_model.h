#pragma once
// Tensor (intra-operator) parallelism inside one device group, Megatron-style (Shoeybi et al. 2019): the big
// matmuls are split over the group's p devices, "column then row", with one all-reduce per pair.
//
// Which nodes are split (decided once, following the data):
//   - a matmul-class node (cost/compute.h's OpClass::kMatmul) that reads a parameter of rank >= 2 is a weight
//     matmul. One whose input is whole opens a pair (column split: each device computes 1/p of the
//     outputs); one whose input is split closes it (row split: each device holds 1/p of the inputs and
//     produces a partial sum, which is all-reduced over the group; several may close one pair). Every other
//     node that reads a split value works on the column-split tensor (attention heads, activations) and is
//     split too. Everything else (norms, residual adds, embeddings) is replicated: every device runs it
//     whole.
//   - a pair still open at the end of the graph ends with an all-gather of its last output, costed as an
//     all-reduce (an upper bound).
//   - an embedding lookup outside a pair whose table (a rank-2 parameter) is bigger than its output at the
//     graph's batch is split by table rows (vocabulary-parallel, as Megatron's input embedding): each device
//     holds 1/p of the table and looks up the ids in its range, and the group all-reduces the output. A small
//     table (position embeddings) stays replicated.
// Costs of a node range on p devices, per microbatch of `samples` samples:
//   compute = replicated time + split time / p; communication = per closing node one ring all-reduce of its
//   output, 2(p-1) alpha + 2(p-1)/p bytes / beta, in forward and again in backward (of the input gradient);
//   it sits on the critical path (no overlap with compute).
// Memory per device: replicated parameters + split parameters / p (gradients and optimizer state alike);
// training: replicated activations + split activations / p, plus the peak of a microbatch's backward as
// StageModel's (a node's non-weight inputs and outputs less what later nodes saved, and with one microbatch
// per step less the gradients not made yet, beside the gradients returned to a range before the last, whole
// on every device), a storage of a split node held 1/p (the outputs of a pair's
// first node and of those inside it, and their views; a split node's saved tensors and its parameters'
// gradients; a pair left open at the end holds its output's part and the gathered whole); inference: the most
// bytes alive at once while a node runs (StageModel's storage lifetimes), a split node's results held 1/p
// each, a pair left open at the end held in part and gathered whole. A range that starts or ends inside a
// pair is costed as if the pair were whole. What does not depend on the batch (StageModel's
// SampleBytes::fixed: a merged weight W + A @ B, a shared input's mask) is held once per run, not per sample,
// everywhere: activations, the range's input, what is alive (inference), the backward's working set and
// saved bytes, and the all-reduced bytes (1/p of it when split, as the rest). Thread safety: immutable after
// construction.
#include <cstdint>
#include <utility>
#include <vector>

#include "partita/hardware/device.h"
#include "partita/search/range_line_max.h"
#include "partita/search/stage_model.h"

namespace partita {

// The rule above, node by node by data flow (shared with the engine's tensor-parallel runner, which must
// split exactly what the model costs): a weight matmul reading whole values opens a pair (kColumn), one
// reading a split value closes it (kRow: several may close one pair, as a VAE's mean and variance heads do),
// and a node reading a split value otherwise lies inside (kInside); kVocabulary is a big embedding lookup
// split by table rows (a pair of its own).
enum class TensorRole : uint8_t { kReplicated, kColumn, kInside, kRow, kVocabulary };
std::vector<TensorRole> tensor_roles(const Graph& graph);

class TensorModel {
 public:
  explicit TensorModel(const StageModel& model);

  const StageModel& base() const { return *model_; }
  bool split(NodeId node) const { return split_[static_cast<size_t>(node)]; }
  // Nodes after which the group all-reduces (row-split matmuls, or the last node of a pair left open).
  bool all_reduce_after(NodeId node) const { return reduce_[static_cast<size_t>(node)]; }
  // Whether [first, last] holds any split node (tensor parallelism has something to split).
  bool has_split(NodeId first, NodeId last) const;

  Seconds forward(int spec, NodeId first, NodeId last, double samples, int p, const LinkSpec& link) const;
  Seconds backward(int spec, NodeId first, NodeId last, double samples, int p, const LinkSpec& link) const;
  // The all-reduces of one pass over [first, last] (part of forward and of backward above).
  Seconds communication(NodeId first, NodeId last, double samples, int p, const LinkSpec& link) const;
  // The most bytes of its peers' parts a device of a group of p holds at once when the group's collectives
  // over [first, last] gather the parts between processes (DistributedTensorGroupLink) for `samples`
  // samples, beside the device's peak: in inference, p - 1 copies of an all-reduced output, (p - 1) / p of
  // a gathered one; in training, whose peak is in a backward, p - 1 copies of the gradient of a replicated
  // value entering split nodes (the backward's only collective, engine_tensor's EnterSplit: the
  // forward's outputs and gathers meet the forward, taken to hold less). 0 without any.
  Bytes received_parts(NodeId first, NodeId last, double samples, int p) const;
  // Per-device memory of the range on a group of p (see above); `in_flight` microbatches of activations kept
  // (training); full checkpointing keeps the stage input per microbatch and runs one microbatch's forward
  // again in its backward; offload is not part of it. `device` (a cluster index, -1: not known) decides the
  // inference kernels' working memory. `microbatches` (per step; 0: not known) as StageLoad's: the device's
  // first backward of the step holds only the gradients made by then (StageModel::memory).
  Bytes memory(NodeId first, NodeId last, int samples, int p, int in_flight, int device = -1,
               int microbatches = 0, Checkpointing checkpointing = Checkpointing::kNone) const;
  // Inference: the most bytes one device of a group of p holds alive at once while a node of [first, last]
  // runs on `samples` samples, at least the range's input (see above), without the kernels' working memory.
  double peak_alive(NodeId first, NodeId last, int samples, int p) const;
  // The same for `samples` samples on `device`, with the running kernel's working memory (StageModel's).
  double peak_live(NodeId first, NodeId last, int samples, int p, int device) const;
  // Activation bytes one device keeps for [first, last] on a group of p.
  SampleBytes activation(NodeId first, NodeId last, int p) const;
  // What one device of a group of p holds for the step: parameters, and when training gradients and
  // optimizer state.
  Bytes model_state(NodeId first, NodeId last, int p) const;
  // Which of a device's gradients exist as one of its backwards starts: none (the only backward of a step, or
  // the device's first), the replicated weights' only (a launched tensor group of one replica: the reducer's
  // buckets keep those, its parts' gradients are made in leaves of their own, engine_tensor), or all of them.
  enum class GradientsAtStart { kNone, kReplicated, kAll };
  // Training: the peak of one microbatch's backward of `samples` samples on one device of a group of p,
  // beyond its activations and model_state (see above), with `there` gradients at its start (may be
  // negative). The gradients not made yet at that node, per device, and their replicated part (every
  // device of the group makes those whole; 0 unless none were there).
  struct BackwardPeak {
    double beyond_state = 0;
    Bytes unmade_gradients{0};
    Bytes unmade_replicated{0};
  };
  BackwardPeak backward_peak(NodeId first, NodeId last, int samples, int p, GradientsAtStart there) const;
  // Trainable bytes of [first, last] (at their first reader) that every device of a group holds whole.
  Bytes replicated_trainable_bytes(NodeId first, NodeId last) const;
  // Trainable bytes one device of a group of p holds for [first, last] (split weights / p, the rest whole):
  // what data-parallel replicas of the group all-reduce per device.
  Bytes trainable_bytes_per_device(NodeId first, NodeId last, int p) const;

 private:
  void build_live_tables(const std::vector<TensorRole>& roles, NodeId gathered);
  void build_backward_tables(const std::vector<TensorRole>& roles, NodeId gathered);
  // Training, on a device of a group of p, at node i of a backward: the working set plus what the nodes up
  // to i saved; the gradients of single-reader parameters read before i (not made yet there).
  SampleBytes backward_bytes(NodeId i, int p) const;
  double unmade_before(NodeId i, int p) const;
  double afresh(NodeId i, int p) const;  // a later backward's fresh gradients at node i, per device

  const StageModel* model_;
  std::vector<bool> split_, reduce_;
  std::vector<std::vector<double>> split_fwd_, split_bwd_;  // [spec][n+1] prefix, per sample
  std::vector<double> split_count_;                         // [n+1] prefix of split nodes
  std::vector<double> reduce_count_;                        // [n+1] prefix
  std::vector<SampleBytes> reduce_bytes_;                   // [n+1] prefix
  std::vector<double> split_param_, split_trainable_;       // [n+1] prefix
  std::vector<SampleBytes> split_act_;                      // [n+1] prefix
  // Inference: bytes alive while node i runs of what every device holds whole (replicated storages,
  // gathered outputs) and of split storages (1/p of it on each device); range maxima for the usual group
  // sizes.
  std::vector<SampleBytes> live_whole_, live_split_;
  NodeId gathered_ = kNoNode;  // the last node of a pair left open at the end, when there is one
  SampleBytes after_gather_whole_, after_gather_split_;    // alive once its output is gathered
  std::vector<std::pair<int, RangeLineMax>> live_tables_;  // (p, lines over samples)
  // Training, per node, whole and split parts (bytes but the gradients): the working set, prefixes of saved
  // bytes and of single-reader trainable bytes, the trainable bytes whose gradients a later backward makes
  // afresh there (StageModel's rule); and for the usual group sizes the range structures over
  // backward_bytes, with (first) the gradients not made yet left out and (later) the fresh ones added.
  std::vector<SampleBytes> ws_whole_, ws_split_, saved_whole_prefix_, saved_split_prefix_;
  std::vector<double> unshared_whole_prefix_, unshared_split_prefix_, afresh_whole_, afresh_split_;
  // [n]: whether node i's outputs are split storages, held 1/p (a pair left open at the end: not, the
  // gathered whole is held too).
  std::vector<bool> output_split_;
  // Training: (split node, bytes) for each replicated value that needs a gradient and a split node reads
  // (its gradient is all-reduced in backward), by node.
  std::vector<std::pair<NodeId, SampleBytes>> entering_;
  struct BackwardTable {
    int p;
    RangeLineMax later, first;
  };
  std::vector<BackwardTable> backward_tables_;
};

}  // namespace partita

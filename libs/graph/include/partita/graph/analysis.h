#pragma once
// Whole-graph analyses used by the planner: order, critical path, parallel branches, pipeline cut points and
// per-node parallelizability. All are free functions over a const Graph&, deterministic, and safe to call
// from several threads on the same graph.
//
// Dependencies are data dependencies: node u precedes node v when v uses a value that u produces. Parameters,
// buffers and constants have no producer and create no dependency. (In-place ops are ordered by the values
// TorchScript threads through them; no separate alias analysis is done.)
#include <span>
#include <string>
#include <vector>

#include "partita/core/units.h"
#include "partita/graph/graph.h"

namespace partita {

// Per node, the distinct nodes it depends on / that depend on it, each list sorted by id.
std::vector<std::vector<NodeId>> node_predecessors(const Graph& graph);
std::vector<std::vector<NodeId>> node_successors(const Graph& graph);

// Kahn's algorithm taking the smallest ready node id first, so for a graph whose nodes are already in
// topological order (every imported graph) the result is 0, 1, ..., N-1. Throws partita::Error on a cycle.
std::vector<NodeId> topological_order(const Graph& graph);

struct CriticalPath {
  Seconds length{0};          // sum of node_cost over `nodes`
  std::vector<NodeId> nodes;  // the heaviest dependency chain, first to last
};

// The longest (heaviest) dependency chain, with node_cost[i] the time of node i (size must be num_nodes()).
// Ties are broken towards the smallest node id, at both the end of the path and every predecessor choice.
CriticalPath critical_path(const Graph& graph, std::span<const Seconds> node_cost);

// One parallel branch of a region: its nodes in topological order. `trivial` when it has no non-structural
// node (an identity shortcut, which is empty, or only shape bookkeeping).
struct Branch {
  std::vector<NodeId> nodes;
  bool trivial = true;
};

// A fork/join region. Definition (on the node DAG, plus a virtual source per user input and a virtual sink
// fed by graph outputs and by nodes whose outputs are unused):
//  - a fork is a node (or a user input) whose outputs are used by >= 2 distinct nodes (the sink counts as
//  one);
//  - its join is the fork's immediate post-dominator: the first node every path from the fork passes through
//    (kNoNode when that is the sink, i.e. the paths only meet at the graph outputs);
//  - the region's nodes are those reachable from the fork without passing through the join; its branches are
//    the weakly connected components of those nodes, plus one empty branch when the fork feeds the join
//    directly (a residual shortcut);
//  - a region is reported when it has >= 2 branches of which >= 1 is non-trivial. Structural nodes stay in
//    the branch lists; they only do not make a branch non-trivial.
// So an Inception block is one region with 4 branches (joined at the ListConstruct feeding aten::cat), a
// residual block one region with 2 (the shortcut empty, or the downsample). Nested regions are reported too.
struct BranchRegion {
  NodeId fork = kNoNode;         // the fork node, or kNoNode when the fork is the user input `fork_input`
  ValueId fork_input = -1;       // set when fork == kNoNode
  NodeId join = kNoNode;         // the join node, or kNoNode for the graph outputs
  std::vector<Branch> branches;  // ordered by first node id; the empty branch (if any) last
  int non_trivial_branches() const;
};

// All fork/join regions, ordered by fork (user-input forks first, then by node id). Post-dominators take one
// pass over the edges; each region is then walked once, so the cost is O(E + sum of region sizes) (deeply
// nested skips, as in a U-Net, make that grow with depth x N; 10^4-node residual stacks take milliseconds).
std::vector<BranchRegion> independent_branches(const Graph& graph);

// A pipeline cut after position `position` of topological_order(): nodes at positions <= position form the
// earlier stage. `values` are the values that must cross: produced at <= position (user inputs count as
// produced before position 0) and used by a node at > position. Parameters, buffers and constants never
// cross (each stage holds its own); graph outputs cross only if a later node uses them.
struct CutPoint {
  int position = -1;            // cut between positions `position` and `position + 1`
  NodeId after_node = kNoNode;  // the node at `position`
  std::vector<ValueId> values;  // sorted by id
  Bytes bytes{0};               // sum of Value::bytes() over `values` (a scalar counts 8)
  Flops flops_before{0};        // sum of Node::cost.flops over positions <= position
};

// Crossing bytes of every cut (size max(N-1, 0)); O(N + E) with a difference array.
std::vector<Bytes> cut_bytes(const Graph& graph);
// Every cut, positions 0 .. N-2. O(N + E + total size of the value lists).
std::vector<CutPoint> cut_points(const Graph& graph);
// k cuts (k + 1 stages) that cross few bytes and split the work reasonably. The work of a node is its
// cost.flops (each node weighs 1 when the graph has no FLOPs at all). Cut j (1..k) is searched in a window of
// cumulative work around j/(k+1) of the total, of half-width balance_tolerance/(k+1) of the total, so each
// stage gets between (1 - 2*tolerance) and (1 + 2*tolerance) times the even share; in the window the cut with
// the fewest bytes wins (ties: nearest the even split, then earliest). When a window holds no cut (one node
// heavier than the window), the unused cut nearest the even split is taken. Requires 0 <= k <= N-1 and
// 0 < balance_tolerance <= 0.5. O(N + E + k log N). Returned in position order.
std::vector<CutPoint> best_cut_points(const Graph& graph, int k, double balance_tolerance = 0.25);

enum class ExecutionMode { kInference, kTraining };

// How a node's weights could be sharded across devices.
enum class TensorParallel {
  kNone,
  kColumnRow,      // a matmul with a weight parameter: split the weight by columns (or rows)
  kOutputChannel,  // a convolution with a weight parameter: split the output channels
  kHeads,          // attention: q @ k^T, softmax, @ v (or scaled_dot_product_attention): split the heads
};

struct NodeParallelism {
  NodeId node = kNoNode;
  // Safe to run on a slice of the batch (dim 0) and concatenate, i.e. under data parallelism.
  bool batch_splittable = true;
  // The verdict comes from a heuristic that can be wrong (a constant view shape that may bake in the batch).
  bool suspect = false;
  std::string reason;  // why not batch splittable / why suspect; empty otherwise
  TensorParallel tensor_parallel = TensorParallel::kNone;
};

// [value] whether it is derived from a user input that carries the batch; parameters, constants, shared
// inputs (Value::shared) and what is computed only from them are not.
std::vector<bool> batch_dependent(const Graph& graph);
// The fewest samples a data-parallel share or a microbatch may hold: 2 when a batch norm normalizes by its
// batch's own statistics (its training flag set, as a trace in train mode records) over one value per channel
// per sample (a [batch, channels] input): on one sample every channel's variance is 0 and the output is the
// bias alone, which PyTorch's F.batch_norm refuses; else 1.
int min_samples_per_share(const Graph& graph);
// [value] the value whose storage it may share: itself, or for the output of a view op (view, reshape, slice,
// select, transpose, split, ...) or of an in-place op (mul_ returns its first argument) its first input's
// root. A write in place to a view writes its root.
std::vector<ValueId> storage_roots(const Graph& graph);
// [user input index] whether a node updates that input in place: an op ending in '_' whose first argument is
// the input or a view of it (x.div_(255) at the top of forward(), x[:, :3].mul_(0.5)). Such a model changes
// the caller's tensor, so repeated runs on one batch, or replicas and microbatches on views of it, would see
// each other's writes.
std::vector<bool> inputs_written_in_place(const Graph& graph);
// [value] batch-dependent single tensors whose dimension 0 is the batch (the graph's batch: its first
// input's dimension 0).
std::vector<bool> batch_major(const Graph& graph);
// [value] whether it can cross between pipeline stages whose devices split the batch differently (hybrid
// plans): a batch-major tensor (its rows go where their samples are), or a value not derived from the batch
// that is not a list or tuple of tensors (the same on every device). Not: a batch size read as a number, a
// list of batch tensors, a tensor with the batch in another dimension.
std::vector<bool> hybrid_crossable(const Graph& graph);
// Storage that some node writes in place, with every value sharing it (storage_roots): a user input or an
// intermediate tensor, its views, views of those and in-place ops' outputs (z = x.new_zeros(...);
// z[:, :16] = a; z[:, 16:] = b; head(z) writes z's storage twice through slices, and head reads z after
// both). Parameters and buffers are left out (load_model refuses a forward() that reads its state after
// updating it).
struct WrittenStorage {
  ValueId root = -1;
  std::vector<ValueId> members;  // every value whose storage_roots entry is `root`, by id
  std::vector<NodeId> writes;    // in-place ops into any member, by id
};
std::vector<WrittenStorage> written_storages(const Graph& graph);
// The values of `storage` that a pipeline stage starting right after node `cut` would hold as separate
// copies: members made at or before the cut and read after it (or returned), and a user-input root read after
// it (every stage holds its own copy of the batch). With two or more of them, an in-place write by that stage
// reaches one copy only, and the stage's later readers of the others miss it: the engine refuses such a
// plan, and storage_write_cuts keeps the planner from making one.
std::vector<ValueId> copies_across_cut(const Graph& graph, const WrittenStorage& storage, NodeId cut);
// [node] whether a pipeline cut after the node leaves every in-place write with the storage it must reach:
// false where, for some written storage, copies_across_cut holds two or more values and a write into it comes
// after the cut (x[:, :8].mul_(0.5); head(x) cut between the slice and the write: the later stage would write
// its received copy of the view and read its own unwritten copy of x; z[:, 16:] = b; head(z) cut between the
// slice and the copy_: the slice and z would arrive as two copies). Conservative where several stages follow
// (the write may belong to a later stage than the one the cut starts). The last node's entry is true.
std::vector<bool> storage_write_cuts(const Graph& graph);
// The first node that reads a value of a written storage made before a write into it, after that write (it
// must see the write, made through another value: head(z) after z[:, 16:] = b reads z, made before), or
// kNoNode. A reader of the in-place op's own output does not count (x = relu(conv(x), inplace=True) feeding
// branches). Branch-parallel plans (any node on any device, every value sent as soon as it is made) do not
// run such a model: their runner detaches what enters each of its segments, which would split the storage.
NodeId first_read_seeing_a_write(const Graph& graph);
// [node] whether a pipeline cut after the node carries only hybrid_crossable values (everything produced at
// or before it and read after it, or a graph output) and is one of storage_write_cuts; the last node's
// entry is true.
std::vector<bool> hybrid_cuts(const Graph& graph);
// [node] whether a pipeline cut after the node carries only tensors and numbers (no list or tuple: what can
// travel between processes, as one message per value) and is one of storage_write_cuts; the last node's
// entry is true.
std::vector<bool> process_cuts(const Graph& graph);

// One entry per node, in node order. Batch splitting is refused for: batch_norm computing batch statistics
// (training flag constant "True", or any batch_norm in mode kTraining: the graph was
// usually traced in eval mode, but training will compute batch statistics); ops that work along a dim
// (reductions sum/mean/amax/max/var/..., softmax, cumsum) of a batch-dependent tensor when that dim is 0 (or
// -rank), or when they reduce over all dims (no dim argument, dim None or []), and (suspect) when the dim is
// not a constant; select on dim 0 and slice on
// dim 0 that is not the full range; and (suspect) view/reshape of a batch-dependent tensor to a constant
// shape whose first entry is not -1. Batch-dependent = derived from a user input.
std::vector<NodeParallelism> analyze_parallelism(const Graph& graph, ExecutionMode mode);

}  // namespace partita

#pragma once
// Internal to the engine: which tensors a tensor-parallel group splits and how each device runs each node
// (Megatron-style, the pairs of search/tensor_model.h's tensor_roles, so the runner splits exactly what the
// planner costs). A pass over the graph, decided once per (graph, degree); torch-free.
//
// Every device of the group runs every node, each on its part of the split tensors:
//  - a column-split weight matmul (aten::linear, aten::matmul or aten::mm with the weight second, aten::addmm
//    as in a Conv1D) reads a replicated
//    input and the device's rows of the weight (and bias); its output is split along the last dim. When the
//    output is cut into k equal parts along that dim (qkv's aten::split into q, k and v), the weight is taken
//    as k blocks, each split, so every part stays whole on each device.
//  - a row-split weight matmul reads its input split along the last dim and the matching columns of the
//    weight; its output is a partial sum, all-reduced over the group; the first device alone adds the bias.
//  - a big embedding lookup (kVocabulary) reads the device's rows of the table; ids outside them give zeros,
//    and the output is all-reduced.
//  - between them, ops on split tensors keep them split: elementwise ops (a replicated operand that is full
//    size along the split dim is sliced, one of size 1 broadcasts), transpose/permute/unsqueeze, view and
//    reshape (the shape's entry for the split dim divided by the degree at run time), split/chunk along
//    another dim or into the weight's blocks, softmax along another dim, matmul with the split dim a batch
//    dim or an outer one, cat along another dim; aten::size of a split dim reports the full size (values
//    computed from sizes stay those of the unsplit model).
//  - anything else reading a split tensor is refused, naming the node, the value and the op.
//  - a graph output still split is gathered (each device gets the whole tensor).
// Training (the runner's side): a replicated tensor that needs a gradient and enters a node with a split
// output gets its gradient all-reduced in backward (each device computed the part through its shard); a
// replicated parameter read only by replicated nodes gets its gradient from the first device alone (every
// device computes the same one).
#include <cstdint>
#include <string>
#include <vector>

#include "partita/graph/graph.h"

namespace partita::detail {

// How a tensor lives on the group: whole on every device (dim -1), or split along `dim` of the unsplit
// shape, which is `blocks` equal blocks, each cut into `degree` equal parts; device r holds part r of every
// block, in block order.
struct Shard {
  int dim = -1;
  int blocks = 1;
  bool split() const { return dim >= 0; }
  friend bool operator==(const Shard&, const Shard&) = default;
};

// What a device does to one input of a node before running it.
struct InputRewrite {
  enum class Kind : uint8_t {
    kAsIs,
    kPart,  // a replicated tensor (a weight, a bias, an operand): take this device's part per `shard`
    kFirstDeviceOnly,  // a row-split matmul's bias: None on every device but the first
    kZeroOnOthers,     // the same where the op needs a tensor (addmm's bias): zeros on the others
    kDivideEntry,      // an int list (a view's shape): entry `entry`, if not -1, divided by the degree
    kDivide,           // an int (a split size): divided by the degree
  };
  Kind kind = Kind::kAsIs;
  Shard shard;     // kPart
  int entry = -1;  // kDivideEntry
};

struct NodeShard {
  std::vector<InputRewrite> inputs;  // parallel to Node::inputs
  bool splits = false;               // some output is split (replicated inputs needing a gradient enter it)
  bool all_reduce = false;           // output 0 is this device's partial sum (row-split matmul, vocabulary)
  bool vocabulary = false;           // embedding by table rows: ids outside this device's rows give zeros
  // aten::size of a split dim: output 0 (an int: -1 means "the whole output"; a list: that entry) times the
  // degree. -2: nothing to scale.
  int scale_output_entry = -2;
};

struct TensorShardPlan {
  int degree = 1;
  std::vector<Shard> shard;       // [value]; a list's entry is its tensors' shard
  std::vector<NodeShard> nodes;   // [node]
  std::vector<bool> gather;       // [graph output index] split: gathered at the end
  std::vector<bool> reads_whole;  // [value] a parameter some replicated node reads (gradient from device 0)
  int split_nodes = 0;            // nodes with a split output (for messages and tests)
  int all_reduces = 0;            // nodes whose output is all-reduced
};

// Throws partita::Error naming the node when a split tensor reaches an op the runner cannot split, or a
// weight does not divide into `degree` parts.
TensorShardPlan plan_tensor_shards(const Graph& graph, int degree);

}  // namespace partita::detail

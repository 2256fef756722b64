#pragma once
// partita's graph IR: a dataflow graph of ATen operations, as imported from TorchScript (or built from a
// model spec). It carries no tensor data and includes no torch headers, so planning code can use it anywhere.
//
// Model: values are produced by at most one node (or are graph inputs / parameters / constants); nodes are
// kept in a topological order (every node's inputs are produced by earlier nodes). Node ids and value ids are
// dense indices into nodes() and values(). Constants (kernel sizes, flags) are values with `constant` set and
// no producer; they are not nodes.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "partita/core/units.h"
#include "partita/graph/tensor_meta.h"

namespace partita {

using NodeId = int32_t;
using ValueId = int32_t;
inline constexpr NodeId kNoNode = -1;

enum class ValueKind { kTensor, kScalar, kList, kTuple, kNone, kOther };

enum class ValueRole {
  kInput,         // a user input of the model (the batch)
  kParameter,     // a trainable weight (graph input after lowering)
  kBuffer,        // a non-trainable module state (e.g. batch norm running stats)
  kConstant,      // a compile-time constant (kernel size, a flag)
  kIntermediate,  // produced by a node
};

struct Value {
  ValueId id = -1;
  std::string name;  // debug name from TorchScript ("x.3", "conv1.weight")
  ValueKind kind = ValueKind::kOther;
  ValueRole role = ValueRole::kIntermediate;
  // A user input without the batch (`--input ...:shared`): one tensor every sample uses, not derived from
  // the batch; plans hand it whole to every device. Set with the input's shape (annotate_shapes).
  bool shared = false;
  // The tensors this value holds: one for a tensor, the elements for a list/tuple of tensors, none for a
  // scalar. Empty until shapes are known (after the importer's example run).
  std::vector<TensorMeta> tensors;
  std::optional<std::string> constant;  // printable constant ("3", "[3, 3]", "False", "None")
  NodeId producer = kNoNode;
  std::vector<NodeId> users;  // in node order, one entry per use

  // Sum of the bytes of the tensors held; a scalar counts 8 bytes (it still crosses a device boundary).
  Bytes bytes() const;
  const TensorMeta* meta() const {
    return tensors.size() == 1 && kind == ValueKind::kTensor ? &tensors[0] : nullptr;
  }
};

// How trustworthy a node's cost is. Structural nodes (list construct, view-like ops, shape queries) cost
// nothing by nature; kNoEstimate means partita has no formula for the op: it still runs, and reports list it.
enum class CostStatus { kEstimated, kStructural, kNoEstimate };

struct OpCost {
  Flops flops{0};  // 2 per multiply-add
  Bytes bytes_read{0};
  Bytes bytes_written{0};
  CostStatus status = CostStatus::kNoEstimate;
  // Kernels LibTorch launches for one call of the op, each paying the device's fixed per-call cost: 1 for
  // almost every op; a recurrent layer (aten::lstm, gru, rnn_*) runs a few per time step, layer and
  // direction.
  int64_t kernel_calls = 1;
};

struct Node {
  NodeId id = -1;
  std::string op;  // ATen/prim qualified name: "aten::linear", "prim::ListConstruct"
  std::vector<ValueId> inputs;
  std::vector<ValueId> outputs;
  std::string scope;   // module path where known ("layer1.0.conv1"), else ""
  std::string source;  // source location where known ("model.py:42"), else ""
  OpCost cost;
};

struct Parameter {
  std::string name;  // "layer1.0.conv1.weight"
  ValueId value = -1;
  bool requires_grad = true;  // false for buffers
};

class Graph {
 public:
  ValueId add_value(ValueKind kind, std::string name, ValueRole role = ValueRole::kIntermediate);
  ValueId add_constant(ValueKind kind, std::string printed);
  // A user input (the batch): order of calls is the order of the model's forward() arguments.
  ValueId add_input(std::string name, ValueKind kind = ValueKind::kTensor);
  ValueId add_parameter(std::string name, bool requires_grad);
  // Appends a node; its outputs must be fresh values (no producer yet), its inputs existing values.
  NodeId add_node(std::string op, std::vector<ValueId> inputs, std::vector<ValueId> outputs);
  void set_outputs(std::vector<ValueId> outputs);
  // Low-level construction for deserializers: registers an existing value (made with add_value and role
  // kInput) as the next user input, or appends a parameter-table entry for an existing value. The caller
  // keeps the role consistent (kParameter / kBuffer); check_invariants() does not look at the tables.
  void append_input(ValueId id);
  void append_parameter(Parameter parameter);

  Value& value(ValueId id);
  const Value& value(ValueId id) const;
  Node& node(NodeId id);
  const Node& node(NodeId id) const;
  const std::vector<Node>& nodes() const { return nodes_; }
  std::vector<Node>& mutable_nodes() { return nodes_; }
  const std::vector<Value>& values() const { return values_; }
  const std::vector<ValueId>& inputs() const { return inputs_; }
  const std::vector<Parameter>& parameters() const { return parameters_; }
  const std::vector<ValueId>& outputs() const { return outputs_; }
  // The user input that carries the batch: the first one that is not shared (Value::shared), whose dim 0 is
  // the batch every other batched input shares. An index into inputs(); -1 when every input is shared.
  int batch_input_index() const;
  int num_nodes() const { return static_cast<int>(nodes_.size()); }
  int num_values() const { return static_cast<int>(values_.size()); }

  // Total parameter elements (trainable and buffers separately).
  int64_t parameter_elements(bool trainable_only = true) const;
  Bytes parameter_bytes(bool trainable_only = true) const;
  Flops total_flops() const;

  // Throws InternalError when an invariant is broken (dangling ids, non-topological order, two producers).
  void check_invariants() const;

 private:
  std::vector<Value> values_;
  std::vector<Node> nodes_;
  std::vector<ValueId> inputs_;
  std::vector<Parameter> parameters_;
  std::vector<ValueId> outputs_;
};

}  // namespace partita

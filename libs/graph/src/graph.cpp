#include "partita/graph/graph.h"

#include <utility>

#include "partita/core/error.h"

namespace partita {

Bytes Value::bytes() const {
  if (kind == ValueKind::kScalar) return Bytes(8);
  Bytes total(0);
  for (const auto& t : tensors) total += t.bytes();
  return total;
}

ValueId Graph::add_value(ValueKind kind, std::string name, ValueRole role) {
  Value v;
  v.id = static_cast<ValueId>(values_.size());
  v.name = std::move(name);
  v.kind = kind;
  v.role = role;
  values_.push_back(std::move(v));
  return values_.back().id;
}

ValueId Graph::add_constant(ValueKind kind, std::string printed) {
  const ValueId id = add_value(kind, "", ValueRole::kConstant);
  values_[id].constant = std::move(printed);
  return id;
}

ValueId Graph::add_input(std::string name, ValueKind kind) {
  const ValueId id = add_value(kind, std::move(name), ValueRole::kInput);
  inputs_.push_back(id);
  return id;
}

ValueId Graph::add_parameter(std::string name, bool requires_grad) {
  const ValueId id =
      add_value(ValueKind::kTensor, name, requires_grad ? ValueRole::kParameter : ValueRole::kBuffer);
  parameters_.push_back(Parameter{std::move(name), id, requires_grad});
  return id;
}

NodeId Graph::add_node(std::string op, std::vector<ValueId> inputs, std::vector<ValueId> outputs) {
  const NodeId id = static_cast<NodeId>(nodes_.size());
  for (ValueId in : inputs) {
    PARTITA_ASSERT(in >= 0 && in < num_values(), "node ", op, " uses unknown value ", in);
    values_[in].users.push_back(id);
  }
  for (ValueId out : outputs) {
    PARTITA_ASSERT(out >= 0 && out < num_values(), "node ", op, " defines unknown value ", out);
    PARTITA_ASSERT(values_[out].producer == kNoNode && values_[out].role == ValueRole::kIntermediate,
                   "value ", out, " already has a producer");
    values_[out].producer = id;
  }
  Node n;
  n.id = id;
  n.op = std::move(op);
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  nodes_.push_back(std::move(n));
  return id;
}

void Graph::set_outputs(std::vector<ValueId> outputs) { outputs_ = std::move(outputs); }

int Graph::batch_input_index() const {
  for (size_t i = 0; i < inputs_.size(); ++i) {
    if (!values_[static_cast<size_t>(inputs_[i])].shared) return static_cast<int>(i);
  }
  return -1;
}

void Graph::append_input(ValueId id) {
  PARTITA_ASSERT(id >= 0 && id < num_values(), "input value id ", id);
  inputs_.push_back(id);
}

void Graph::append_parameter(Parameter parameter) {
  PARTITA_ASSERT(parameter.value >= 0 && parameter.value < num_values(), "parameter value id ",
                 parameter.value);
  parameters_.push_back(std::move(parameter));
}

Value& Graph::value(ValueId id) {
  PARTITA_ASSERT(id >= 0 && id < num_values(), "value id ", id);
  return values_[id];
}
const Value& Graph::value(ValueId id) const {
  PARTITA_ASSERT(id >= 0 && id < num_values(), "value id ", id);
  return values_[id];
}
Node& Graph::node(NodeId id) {
  PARTITA_ASSERT(id >= 0 && id < num_nodes(), "node id ", id);
  return nodes_[id];
}
const Node& Graph::node(NodeId id) const {
  PARTITA_ASSERT(id >= 0 && id < num_nodes(), "node id ", id);
  return nodes_[id];
}

int64_t Graph::parameter_elements(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& p : parameters_) {
    if (trainable_only && !p.requires_grad) continue;
    for (const auto& t : values_[p.value].tensors) n += t.numel();
  }
  return n;
}

Bytes Graph::parameter_bytes(bool trainable_only) const {
  Bytes b(0);
  for (const auto& p : parameters_) {
    if (trainable_only && !p.requires_grad) continue;
    b += values_[p.value].bytes();
  }
  return b;
}

Flops Graph::total_flops() const {
  Flops f(0);
  for (const auto& n : nodes_) f += n.cost.flops;
  return f;
}

void Graph::check_invariants() const {
  for (const auto& n : nodes_) {
    for (ValueId in : n.inputs) {
      PARTITA_ASSERT(in >= 0 && in < num_values(), "node ", n.id, " input ", in);
      const NodeId p = values_[in].producer;
      PARTITA_ASSERT(p < n.id, "node ", n.id, " (", n.op, ") uses value ", in, " produced later by node ", p);
      if (p == kNoNode) {
        PARTITA_ASSERT(values_[in].role != ValueRole::kIntermediate, "value ", in, " has no producer");
      }
    }
    for (ValueId out : n.outputs) PARTITA_ASSERT(values_[out].producer == n.id, "value ", out, " producer");
  }
  for (ValueId out : outputs_) PARTITA_ASSERT(out >= 0 && out < num_values(), "graph output ", out);
}

}  // namespace partita

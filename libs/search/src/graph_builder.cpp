#include "graph_builder.h"

namespace partita::detail {

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

ValueId GraphBuilder::input(const std::string& name, std::vector<int64_t> shape, DType dtype) {
  const ValueId v = graph_.add_input(name);
  graph_.value(v).tensors = {TensorMeta{std::move(shape), dtype}};
  return v;
}

ValueId GraphBuilder::parameter(const std::string& name, std::vector<int64_t> shape) {
  const ValueId v = graph_.add_parameter(name, true);
  graph_.value(v).tensors = {TensorMeta{std::move(shape), dtype_}};
  return v;
}

ValueId GraphBuilder::op(const std::string& op, const std::string& scope, std::vector<ValueId> inputs,
                         std::vector<int64_t> shape, double flops) {
  const ValueId out = graph_.add_value(ValueKind::kTensor, scope.empty() ? op : scope);
  graph_.value(out).tensors = {TensorMeta{std::move(shape), dtype_}};
  Bytes read(0);
  for (ValueId in : inputs) read += graph_.value(in).bytes();
  const NodeId n = graph_.add_node(op, std::move(inputs), {out});
  Node& node = graph_.node(n);
  node.scope = scope;
  node.cost = OpCost{Flops(flops), read, graph_.value(out).bytes(), CostStatus::kEstimated};
  return out;
}

Graph GraphBuilder::take(ValueId output) {
  graph_.set_outputs({output});
  graph_.check_invariants();
  return std::move(graph_);
}

}  // namespace partita::detail

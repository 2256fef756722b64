#pragma once
// Internal: appends ops with shapes and roofline-style costs to a Graph (used by the model spec builders).
#include <string>
#include <vector>

#include "partita/graph/graph.h"

namespace partita::detail {

class GraphBuilder {
 public:
  explicit GraphBuilder(DType dtype) : dtype_(dtype) {}
  ValueId input(const std::string& name, std::vector<int64_t> shape, DType dtype);
  ValueId parameter(const std::string& name, std::vector<int64_t> shape);
  // One node with one output of `shape`; flops as given; bytes read = tensor inputs, written = output.
  ValueId op(const std::string& op, const std::string& scope, std::vector<ValueId> inputs,
             std::vector<int64_t> shape, double flops);
  Graph take(ValueId output);

 private:
  DType dtype_;
  Graph graph_;
};

int64_t numel(const std::vector<int64_t>& shape);

}  // namespace partita::detail

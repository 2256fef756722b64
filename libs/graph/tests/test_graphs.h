#pragma once
// Small hand-built graphs shared by the graph library's tests.
#include <string>
#include <utility>
#include <vector>

#include "partita/graph/graph.h"

namespace partita::testing {

// A fresh intermediate tensor value with a known shape.
inline ValueId tensor(Graph& g, std::vector<int64_t> shape, DType dtype = DType::kFloat32,
                      std::string name = "") {
  const ValueId v = g.add_value(ValueKind::kTensor, std::move(name));
  g.value(v).tensors.push_back(TensorMeta{std::move(shape), dtype});
  return v;
}

inline ValueId input(Graph& g, std::vector<int64_t> shape, std::string name = "x") {
  const ValueId v = g.add_input(std::move(name));
  g.value(v).tensors.push_back(TensorMeta{std::move(shape), DType::kFloat32});
  return v;
}

inline ValueId parameter(Graph& g, std::string name, std::vector<int64_t> shape, bool requires_grad = true) {
  const ValueId v = g.add_parameter(std::move(name), requires_grad);
  g.value(v).tensors.push_back(TensorMeta{std::move(shape), DType::kFloat32});
  return v;
}

inline ValueId int_constant(Graph& g, const std::string& printed) {
  return g.add_constant(ValueKind::kScalar, printed);
}
inline ValueId list_constant(Graph& g, const std::string& printed) {
  return g.add_constant(ValueKind::kList, printed);
}
inline ValueId none(Graph& g) { return g.add_constant(ValueKind::kNone, "None"); }

// Appends a node with one fresh output tensor of the given shape; returns the output value.
inline ValueId op(Graph& g, const std::string& name, std::vector<ValueId> inputs,
                  std::vector<int64_t> out_shape) {
  const ValueId out = tensor(g, std::move(out_shape));
  g.add_node(name, std::move(inputs), {out});
  return out;
}

// conv2d(in, weight [out_c, in_c, 3, 3], None, stride 1, pad 1, dilation 1, groups 1) keeping spatial size.
inline ValueId conv3x3(Graph& g, ValueId in, const std::string& name, int64_t in_c, int64_t out_c) {
  const ValueId w = parameter(g, name + ".weight", {out_c, in_c, 3, 3});
  const ValueId ones = list_constant(g, "[1, 1]");
  return op(g, "aten::conv2d", {in, w, none(g), ones, ones, ones, int_constant(g, "1")}, {1, out_c, 8, 8});
}

// x -> n0 relu -> {n1 sigmoid, n2 tanh} -> n3 add. Every tensor is f32[1, 4] (16 bytes).
inline Graph diamond() {
  Graph g;
  const ValueId x = input(g, {1, 4});
  const ValueId a = op(g, "aten::relu", {x}, {1, 4});
  const ValueId b = op(g, "aten::sigmoid", {a}, {1, 4});
  const ValueId c = op(g, "aten::tanh", {a}, {1, 4});
  g.set_outputs({op(g, "aten::add", {b, c, int_constant(g, "1")}, {1, 4})});
  return g;
}

// x -> relu -> relu -> ... (n nodes), f32[2, 8] (64 bytes) throughout.
inline Graph chain(int n) {
  Graph g;
  ValueId v = input(g, {2, 8});
  for (int i = 0; i < n; ++i) v = op(g, "aten::relu", {v}, {2, 8});
  g.set_outputs({v});
  return g;
}

// n0 stem relu; branches n1 | n2,n3 | n4,n5 | n6 pool,n7; n8 ListConstruct; n9 cat.
inline Graph inception() {
  Graph g;
  const ValueId x = input(g, {1, 4, 8, 8});
  const ValueId stem = op(g, "aten::relu", {x}, {1, 4, 8, 8});
  const ValueId b1 = conv3x3(g, stem, "b1", 4, 2);
  const ValueId b2 = conv3x3(g, conv3x3(g, stem, "b2a", 4, 2), "b2b", 2, 2);
  const ValueId b3 = conv3x3(g, conv3x3(g, stem, "b3a", 4, 2), "b3b", 2, 2);
  const ValueId ones = list_constant(g, "[1, 1]");
  const ValueId pooled =
      op(g, "aten::max_pool2d", {stem, list_constant(g, "[3, 3]"), ones, ones, ones, int_constant(g, "0")},
         {1, 4, 8, 8});
  const ValueId b4 = conv3x3(g, pooled, "b4", 4, 2);
  const ValueId list = g.add_value(ValueKind::kList, "branches");
  g.add_node("prim::ListConstruct", {b1, b2, b3, b4}, {list});
  g.set_outputs({op(g, "aten::cat", {list, int_constant(g, "1")}, {1, 8, 8, 8})});
  return g;
}

// n0 relu (fork); n1 conv, n2 bn, n3 relu_, n4 conv, n5 bn; [n6 conv, n7 bn downsample]; add_; relu_.
inline Graph residual(bool downsample) {
  Graph g;
  const ValueId x = input(g, {1, 4, 8, 8});
  const ValueId h = op(g, "aten::relu", {x}, {1, 4, 8, 8});
  auto bn = [&](ValueId in, const std::string& name) {
    const ValueId w = parameter(g, name + ".weight", {4});
    const ValueId rm = parameter(g, name + ".running_mean", {4}, false);
    const ValueId f = g.add_constant(ValueKind::kScalar, "False");
    return op(g, "aten::batch_norm", {in, w, w, rm, rm, f, int_constant(g, "0"), int_constant(g, "0"), f},
              {1, 4, 8, 8});
  };
  ValueId main = bn(conv3x3(g, h, "conv1", 4, 4), "bn1");
  main = op(g, "aten::relu_", {main}, {1, 4, 8, 8});
  main = bn(conv3x3(g, main, "conv2", 4, 4), "bn2");
  const ValueId shortcut = downsample ? bn(conv3x3(g, h, "down", 4, 4), "down_bn") : h;
  const ValueId sum = op(g, "aten::add_", {main, shortcut, int_constant(g, "1")}, {1, 4, 8, 8});
  g.set_outputs({op(g, "aten::relu_", {sum}, {1, 4, 8, 8})});
  return g;
}

}  // namespace partita::testing

#pragma once
// Test helpers: specs, clusters and small chain graphs with exact, hand-checkable costs.
#include <random>
#include <string>
#include <vector>

#include "partita/cost/compute.h"
#include "partita/graph/graph.h"
#include "partita/hardware/device.h"

namespace partita::testing {

// A device doing `tflops` TFLOP/s in f32 with effectively infinite memory bandwidth (compute-bound roofline).
inline DeviceSpec make_spec(const std::string& name, double tflops, double mem_gib = 80, double tdp = 400,
                            double idle = 100) {
  DeviceSpec s;
  s.name = name;
  s.kind = DeviceKind::kCuda;
  s.peak_flops[DType::kFloat32] = FlopsPerSecond(tflops * 1e12);
  s.peak_flops[DType::kBFloat16] = FlopsPerSecond(tflops * 1e12);
  s.memory_bandwidth = BytesPerSecond(1e30);
  s.memory = Bytes(static_cast<int64_t>(mem_gib * (1 << 30)));
  s.tdp = Watts(tdp);
  s.idle_power = Watts(idle);
  return s;
}

// Gives value `v` of `g` one float32 tensor of `shape`; returns v (for graphs built value by value).
inline ValueId f32(Graph& g, ValueId v, std::vector<int64_t> shape) {
  g.value(v).tensors = {TensorMeta{std::move(shape), DType::kFloat32}};
  return v;
}

// Adds one node per (op, inputs, outputs), each costing 1 GFLOP (estimated); sets the graph's outputs.
struct NodeSpec {
  std::string op;
  std::vector<ValueId> inputs, outputs;
};
inline void add_costed_nodes(Graph& g, const std::vector<NodeSpec>& nodes,
                             const std::vector<ValueId>& outputs) {
  for (const NodeSpec& n : nodes)
    g.node(g.add_node(n.op, n.inputs, n.outputs)).cost =
        OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.set_outputs(outputs);
}

inline LinkSpec make_link(double gbps, double latency_us = 0) {
  return LinkSpec{"test link", Seconds(latency_us * 1e-6), BytesPerSecond(gbps * 1e9), "test"};
}

// Devices "d0".."dN-1" on one node joined by `link`.
inline Cluster make_cluster(const std::vector<DeviceSpec>& specs, const LinkSpec& link) {
  Cluster c;
  c.name = "test";
  for (size_t i = 0; i < specs.size(); ++i)
    c.devices.push_back(ClusterDevice{"d" + std::to_string(i), "node0", specs[i]});
  c.intra_node_link = link;
  c.inter_node_link = link;
  return c;
}

// Distinct specs of a cluster, in first-appearance order.
inline std::vector<DeviceSpec> distinct_specs(const Cluster& c) {
  std::vector<DeviceSpec> out;
  for (const auto& d : c.devices) {
    bool seen = false;
    for (const auto& s : out) seen = seen || s.name == d.spec.name;
    if (!seen) out.push_back(d.spec);
  }
  return out;
}

inline CostTable table_for(const Graph& g, const Cluster& c) {
  return roofline_cost_table(g, distinct_specs(c));
}

// A chain of linear-like nodes at batch `batch`: node i reads the previous output and a weight of
// params[i] floats, writes acts[i] floats per sample, and costs flops[i] per sample.
inline Graph chain_graph(const std::vector<double>& flops, const std::vector<int64_t>& acts,
                         const std::vector<int64_t>& params, int batch = 1) {
  Graph g;
  ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{batch, 16}, DType::kFloat32}};
  for (size_t i = 0; i < flops.size(); ++i) {
    const ValueId w = g.add_parameter("w" + std::to_string(i), true);
    g.value(w).tensors = {TensorMeta{{params[i]}, DType::kFloat32}};
    const ValueId y = g.add_value(ValueKind::kTensor, "y" + std::to_string(i));
    g.value(y).tensors = {TensorMeta{{batch, acts[i]}, DType::kFloat32}};
    const NodeId n = g.add_node("aten::linear", {x, w}, {y});
    g.node(n).cost = OpCost{Flops(flops[i] * batch), Bytes(0), Bytes(0), CostStatus::kEstimated};
    x = y;
  }
  g.set_outputs({x});
  return g;
}

// chain_graph of `layers` random nodes drawn from `rng`: 1-10 GFLOP per sample, 1024-61024 output floats per
// sample and 4096 to 4096 + `max_extra_params` weight floats each (in that order per node).
inline Graph random_chain_graph(std::mt19937& rng, int layers, double max_extra_params) {
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> f;
  std::vector<int64_t> a, p;
  for (int i = 0; i < layers; ++i) {
    f.push_back(1e9 + 9e9 * u(rng));
    a.push_back(1024 + static_cast<int64_t>(60000 * u(rng)));
    p.push_back(4096 + static_cast<int64_t>(max_extra_params * u(rng)));
  }
  return chain_graph(f, a, p);
}

// x -> linear (1 TFLOP, weight [1024, 16]) -> relu -> linear (1 TFLOP, weight [16, 1024]) -> out of `floats`.
inline Graph mlp_pair_graph(int64_t floats) {
  Graph g;
  ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 16}, DType::kFloat32}};
  auto add = [&](const char* op, std::vector<int64_t> weight, int64_t out, double flops) {
    std::vector<ValueId> in{x};
    if (!weight.empty()) {
      const ValueId w = g.add_parameter(std::string("w") + std::to_string(g.num_nodes()), true);
      g.value(w).tensors = {TensorMeta{weight, DType::kFloat32}};
      in.push_back(w);
    }
    const ValueId y = g.add_value(ValueKind::kTensor, "y");
    g.value(y).tensors = {TensorMeta{{1, out}, DType::kFloat32}};
    const NodeId n = g.add_node(op, in, {y});
    g.node(n).cost = OpCost{Flops(flops), Bytes(0), Bytes(0), CostStatus::kEstimated};
    x = y;
  };
  add("aten::linear", {1024, 16}, 1024, 1e12);
  add("aten::relu", {}, 1024, 0);
  add("aten::linear", {16, 1024}, floats, 1e12);
  g.set_outputs({x});
  return g;
}

// x [1, 16] -> n0 mul by `scale` [16] (64 bytes, replicated under tensor parallelism) -> n1 linear (w1
// [1024, 16], 64 KiB, column-split) -> n2 linear (w2 [floats, 1024], row-split: it closes the pair) ->
// out [1, floats].
inline Graph scaled_pair_graph(int64_t floats) {
  Graph g;
  ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 16}, DType::kFloat32}};
  auto op = [&](const char* name, std::vector<ValueId> in, int64_t out) {
    const ValueId y = g.add_value(ValueKind::kTensor, name);
    g.value(y).tensors = {TensorMeta{{1, out}, DType::kFloat32}};
    g.node(g.add_node(name, std::move(in), {y})).cost =
        OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
    return y;
  };
  auto param = [&](const char* name, std::vector<int64_t> shape) {
    const ValueId w = g.add_parameter(name, true);
    g.value(w).tensors = {TensorMeta{std::move(shape), DType::kFloat32}};
    return w;
  };
  x = op("aten::mul", {x, param("scale", {16})}, 16);
  x = op("aten::linear", {x, param("w1", {1024, 16})}, 1024);
  g.set_outputs({op("aten::linear", {x, param("w2", {floats, 1024})}, floats)});
  return g;
}

// Tied weights, as a language model's embedding and output layer (batch 1, f32): x [1, 16] -> n0 linear(x, E)
// -> a [1, 100] -> n1 linear(a, W) -> b [1, 100] -> n2 linear(b, E) -> y [1, 10]; E has 1000 floats (4000
// bytes) and is read by n0 and n2, W has 2000 (8000 bytes).
inline Graph tied_weight_graph() {
  Graph g;
  const auto tensor = [&](const std::string& name, int64_t floats) {
    const ValueId v = g.add_value(ValueKind::kTensor, name);
    g.value(v).tensors = {TensorMeta{{1, floats}, DType::kFloat32}};
    return v;
  };
  const auto weight = [&](const std::string& name, int64_t floats) {
    const ValueId w = g.add_parameter(name, true);
    g.value(w).tensors = {TensorMeta{{floats}, DType::kFloat32}};
    return w;
  };
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 16}, DType::kFloat32}};
  const ValueId e = weight("E", 1000), w = weight("W", 2000);
  const ValueId a = tensor("a", 100), b = tensor("b", 100), y = tensor("y", 10);
  const NodeId n0 = g.add_node("aten::linear", {x, e}, {a});
  const NodeId n1 = g.add_node("aten::linear", {a, w}, {b});
  const NodeId n2 = g.add_node("aten::linear", {b, e}, {y});
  for (NodeId n : {n0, n1, n2})
    g.node(n).cost = OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.set_outputs({y});
  return g;
}

// Three layers for two devices under a tight memory limit (graph batch 1, Adam; sizes in bytes, M = MiB):
// layer 0 turns the 64-byte input into a 4 M hidden output per sample with 1 M of weights (4 M with
// gradients and Adam's moments, 2 M with the moments offloaded) and 1e10 FLOP a sample; layer 1 turns that
// into 64 bytes with 64 bytes of weights and 1e6 FLOP; layer 2 maps 64 bytes to 64 bytes with 1 M of weights
// and 1e10 FLOP. Each linear saves its input for backward (its weight needs a gradient), so the 4 M is saved
// by layer 1 and dies there: a stage of layers 0 and 1 has 4 M to offload, a stage of one layer nothing.
// With one-sample microbatches under 1F1B, stage 0 = layers 0-1 keeps two in flight (each holds the 64-byte
// input, the 4 M and layer 1's 64-byte result; workspace, at layer 0 in a backward after the first: the 4 M's
// gradient and w0's made afresh, 1 M) and needs
//   17 M as is, 15 M offloading optimizer state, 13 M offloading activations (the second microbatch's 4 M
//   goes to the host) or checkpointing, and 11 M offloading both or checkpointing with optimizer state
//   offloaded (exactly 17 M + 448, 15 M + 320, 13 M + 448, 11 M + 320),
// while stage 1 = layer 2 (one in flight) needs 5 M + 200 as is (w2's fresh gradient in its backward), and
// the whole model on one device (one in flight) 17 M + 328 as is and at least 13 M + 200 (optimizer state
// offloaded; with one microbatch in flight activation offload frees nothing and checkpointing adds the
// input).
inline Graph offload_pair_graph() {
  return chain_graph({1e10, 1e6, 1e10}, {1 << 20, 16, 16}, {1 << 18, 16, 1 << 18});
}

// `n` 1 TFLOP/s devices of kind `kind` with 80 GiB each (the tests cap memory with memory_limit).
inline Cluster uniform_cluster(int n, DeviceKind kind) {
  DeviceSpec s = make_spec(kind == DeviceKind::kCpu ? "cpu" : "gpu", 1);
  s.kind = kind;
  if (kind == DeviceKind::kCpu) s.cores = 1;
  return make_cluster(std::vector<DeviceSpec>(static_cast<size_t>(n), s), make_link(100, 5));
}

}  // namespace partita::testing

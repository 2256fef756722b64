#include "partita/cost/compute.h"

#include <algorithm>

#include "partita/core/error.h"
#include "partita/cost/op_class_fit.h"
#include "partita/hardware/cpu_spec.h"

namespace partita {

Seconds roofline_time(const OpCost& cost, const DeviceSpec& spec, DType dtype, double flops_efficiency) {
  PARTITA_CHECK(flops_efficiency > 0 && flops_efficiency <= 1.0, "flops efficiency ", flops_efficiency,
                " of device '", spec.name, "' is outside (0, 1]");
  if (cost.status == CostStatus::kStructural) return Seconds(0);
  // No formula for this op: charge the launch only rather than invent a number (reports flag such ops).
  if (cost.status == CostStatus::kNoEstimate) return spec.op_overhead;
  Seconds compute(0);
  if (cost.flops.value() > 0) {
    const FlopsPerSecond peak = spec.flops_for(dtype);
    PARTITA_CHECK(peak.value() > 0, "device '", spec.name, "' lists no peak FLOP/s for ", dtype_name(dtype),
                  " nor for f32: add peak_flops to its profile");
    compute = cost.flops / (peak * flops_efficiency);
  }
  Seconds memory(0);
  const Bytes traffic = cost.bytes_read + cost.bytes_written;
  if (traffic.value() > 0) {
    PARTITA_CHECK(spec.memory_bandwidth.value() > 0, "device '", spec.name,
                  "' has memory_bandwidth 0: add it to its profile");
    memory = traffic / spec.memory_bandwidth;
  }
  return std::max(compute, memory) + spec.op_overhead * static_cast<double>(cost.kernel_calls);
}

Seconds roofline_time(const OpCost& cost, const DeviceSpec& spec, DType dtype, const OpClassFit& fit) {
  if (cost.status == CostStatus::kStructural) return Seconds(0);
  // No formula: a call of the class costs at least its fixed part; do not invent the rest.
  if (cost.status == CostStatus::kNoEstimate) return fit.fixed;
  OpClassFit scaled = fit;
  scaled.fixed = fit.fixed * static_cast<double>(cost.kernel_calls);
  // The fit is measured in f32; another dtype runs at the device's peak ratio to f32 (bf16 GEMM units).
  const double f32 = spec.flops_for(DType::kFloat32).value();
  if (dtype != DType::kFloat32 && f32 > 0)
    scaled.flops_rate = fit.flops_rate * (spec.flops_for(dtype).value() / f32);
  return op_class_fit_time(scaled, cost.flops, cost.bytes_read + cost.bytes_written);
}

std::string_view calibration_class(const Graph& graph, const Node& node, OpClass op_class) {
  if (op_class == OpClass::kConv && node.inputs.size() >= 2) {
    // weight [out, in / groups, kernel...] against input [batch, in, ...]: fewer weight input channels than
    // input channels means groups > 1 (depthwise when 1 per group).
    const TensorMeta* x = graph.value(node.inputs[0]).meta();
    const TensorMeta* w = graph.value(node.inputs[1]).meta();
    if (x && w && x->shape.size() >= 2 && w->shape.size() >= 2 && w->shape[1] < x->shape[1]) {
      return "grouped_conv";
    }
  }
  // Windowed pooling (max_pool2d, avg_pool2d) revisits each input under every window and runs its own
  // kernels, orders of magnitude below a row reduction's rate on some builds; global (adaptive) pooling is
  // a plain reduction.
  if (op_class == OpClass::kReduction && node.op.find("_pool") != std::string::npos &&
      node.op.find("adaptive") == std::string::npos) {
    return "pool";
  }
  return op_class_name(op_class);
}

NodeTimes roofline_node_times(const Graph& graph, const Node& node, const DeviceSpec& spec) {
  const OpClass op_class = classify_op(node);
  NodeTimes t;
  if (op_class == OpClass::kStructural && node.cost.status != CostStatus::kEstimated) {
    // A view launches no kernel, but on a calibrated device (this machine's CPU, where partita's executor
    // runs every ATen node through the dispatcher) it still costs one boxed call; prim nodes are the
    // executor's own bookkeeping.
    if (!spec.op_class_fits.empty() && node.op.starts_with("aten::")) t.forward = spec.op_overhead;
    t.forward_fixed = t.forward;
    return t;
  }
  const DType dtype = node_compute_dtype(graph, node);
  const std::string name(calibration_class(graph, node, op_class));
  const bool no_formula = node.cost.status == CostStatus::kNoEstimate;  // the time is the fixed part alone
  const double calls = static_cast<double>(node.cost.kernel_calls);
  if (const auto fit = spec.op_class_fits.find(name); fit != spec.op_class_fits.end()) {
    t.forward = roofline_time(node.cost, spec, dtype, fit->second);
    t.forward_fixed = no_formula ? t.forward : std::min(fit->second.fixed * calls, t.forward);
  } else {
    const auto eff = spec.flops_efficiency.find(std::string(op_class_name(op_class)));
    t.forward = roofline_time(node.cost, spec, dtype, eff == spec.flops_efficiency.end() ? 1.0 : eff->second);
    t.forward_fixed = std::min(spec.op_overhead * calls, t.forward);
  }
  if (const auto fit = spec.op_class_backward_fits.find(name); fit != spec.op_class_backward_fits.end()) {
    t.backward = roofline_time(node.cost, spec, dtype, fit->second);
    t.backward_fixed = no_formula ? t.backward : std::min(fit->second.fixed * calls, t.backward);
  } else {
    t.backward = t.forward * backward_ratio(op_class);
    // A backward launches about as many calls as its forward (grad input, grad weight: each a call); a
    // recurrent layer's about twice as many (see backward_ratio).
    const double backward_calls = op_class == OpClass::kRecurrent ? backward_ratio(op_class) : 1.0;
    t.backward_fixed = std::min(t.forward_fixed * backward_calls, t.backward);
  }
  return t;
}

DType node_compute_dtype(const Graph& graph, const Node& node) {
  for (const auto* ids : {&node.outputs, &node.inputs}) {
    for (ValueId id : *ids) {
      for (const auto& t : graph.value(id).tensors) {
        if (is_floating(t.dtype)) return t.dtype;
      }
    }
  }
  return DType::kFloat32;
}

NodeTimes CostTable::range_total(int spec, NodeId first, NodeId last) const {
  PARTITA_CHECK(spec >= 0 && spec < static_cast<int>(times.size()), "cost table has no spec row ", spec,
                " (it has ", times.size(), ")");
  const auto& row = times[static_cast<size_t>(spec)];
  PARTITA_CHECK(first >= 0 && first <= last && last < static_cast<NodeId>(row.size()), "node range [", first,
                ", ", last, "] is not inside the table's ", row.size(), " nodes");
  NodeTimes total;
  for (NodeId n = first; n <= last; ++n) {
    const NodeTimes& t = row[static_cast<size_t>(n)];
    total.forward += t.forward;
    total.backward += t.backward;
    total.forward_fixed += t.forward_fixed;
    total.backward_fixed += t.backward_fixed;
  }
  return total;
}

CostTable roofline_cost_table(const Graph& graph, const std::vector<DeviceSpec>& specs) {
  CostTable table;
  table.method = "roofline";
  for (const auto& spec : specs) {
    table.spec_names.push_back(spec.name);
    std::vector<NodeTimes> row;
    row.reserve(graph.nodes().size());
    for (const auto& node : graph.nodes()) row.push_back(roofline_node_times(graph, node, spec));
    table.times.push_back(std::move(row));
  }
  return table;
}

void apply_measured_times(CostTable& table, int spec, const std::vector<NodeTimes>& measured,
                          MeasuredFixedParts fixed) {
  PARTITA_CHECK(spec >= 0 && spec < static_cast<int>(table.times.size()), "apply_measured_times: spec row ",
                spec, " does not exist (the table has ", table.times.size(), " rows)");
  auto& row = table.times[static_cast<size_t>(spec)];
  PARTITA_CHECK(row.size() == measured.size(), "apply_measured_times: ", measured.size(),
                " measured times for a graph of ", row.size(), " nodes: measure the same graph");
  for (size_t n = 0; n < row.size(); ++n) {
    NodeTimes m = measured[n];
    if (fixed == MeasuredFixedParts::kFromRow) {
      m.forward_fixed = std::min(row[n].forward_fixed, m.forward);
      m.backward_fixed = std::min(row[n].backward_fixed, m.backward);
    }
    row[n] = m;
  }
  table.method = "profiled";
}

std::vector<NodeTimes> fit_per_call_parts(const std::vector<NodeTimes>& at_batch, int batch,
                                          const std::vector<NodeTimes>& at_small, int small_batch) {
  PARTITA_CHECK(small_batch > 0 && small_batch < batch, "fit_per_call_parts: the second batch size ",
                small_batch, " must be between 1 and the first's ", batch - 1);
  PARTITA_CHECK(at_batch.size() == at_small.size(), "fit_per_call_parts: ", at_batch.size(), " and ",
                at_small.size(), " nodes: measure the same graph at both batch sizes");
  const double big = batch, small = small_batch;
  const auto fixed_part = [&](Seconds t_big, Seconds t_small) {
    const double f = (big * t_small.value() - small * t_big.value()) / (big - small);
    return Seconds(std::clamp(f, 0.0, t_big.value()));
  };
  std::vector<NodeTimes> out = at_batch;
  for (size_t n = 0; n < out.size(); ++n) {
    out[n].forward_fixed = fixed_part(at_batch[n].forward, at_small[n].forward);
    out[n].backward_fixed = fixed_part(at_batch[n].backward, at_small[n].backward);
  }
  return out;
}

DeviceSpec cpu_core_group_spec(const DeviceSpec& whole_cpu, int cores) {
  return cpu_group_spec(whole_cpu, cores);
}

}  // namespace partita

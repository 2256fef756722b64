#include "partita/cost/compute.h"

#include <algorithm>

#include "partita/core/error.h"
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
  return std::max(compute, memory) + spec.op_overhead;
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
    total.forward += row[static_cast<size_t>(n)].forward;
    total.backward += row[static_cast<size_t>(n)].backward;
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
    for (const auto& node : graph.nodes()) {
      const OpClass op_class = classify_op(node);
      NodeTimes t;
      // A view or prim node the graph library could not cost is still free: it launches nothing.
      if (op_class != OpClass::kStructural || node.cost.status == CostStatus::kEstimated) {
        const auto eff = spec.flops_efficiency.find(std::string(op_class_name(op_class)));
        t.forward = roofline_time(node.cost, spec, node_compute_dtype(graph, node),
                                  eff == spec.flops_efficiency.end() ? 1.0 : eff->second);
      }
      t.backward = t.forward * backward_ratio(op_class);
      row.push_back(t);
    }
    table.times.push_back(std::move(row));
  }
  return table;
}

void apply_measured_times(CostTable& table, int spec, const std::vector<NodeTimes>& measured) {
  PARTITA_CHECK(spec >= 0 && spec < static_cast<int>(table.times.size()), "apply_measured_times: spec row ",
                spec, " does not exist (the table has ", table.times.size(), " rows)");
  auto& row = table.times[static_cast<size_t>(spec)];
  PARTITA_CHECK(row.size() == measured.size(), "apply_measured_times: ", measured.size(),
                " measured times for a graph of ", row.size(), " nodes: measure the same graph");
  row = measured;
  table.method = "profiled";
}

DeviceSpec cpu_core_group_spec(const DeviceSpec& whole_cpu, int cores) {
  return cpu_group_spec(whole_cpu, cores);
}

}  // namespace partita

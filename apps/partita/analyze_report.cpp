#include "analyze_report.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "partita/core/format.h"
#include "partita/graph/op_cost.h"

namespace partita::app {

AnalysisReport make_analysis_report(const Graph& graph, BatchCheckResult batch, int /*cuts*/) {
  AnalysisReport r;
  r.params = graph.parameter_elements(true);
  r.buffer_elements = graph.parameter_elements(false) - r.params;
  r.param_bytes = graph.parameter_bytes(false);
  r.flops = graph.total_flops();
  std::map<std::string, OpSummary> by_op;
  for (const Node& n : graph.nodes()) {
    if (n.cost.status == CostStatus::kStructural) continue;
    ++r.compute_nodes;
    auto& s = by_op[n.op];
    s.op = n.op;
    ++s.count;
    s.flops += n.cost.flops;
    for (ValueId v : n.outputs) r.activation_bytes += graph.value(v).bytes();
  }
  for (auto& [op, s] : by_op) r.top_ops.push_back(s);
  std::stable_sort(r.top_ops.begin(), r.top_ops.end(),
                   [](const OpSummary& a, const OpSummary& b) { return a.flops > b.flops; });
  r.no_estimate = ops_without_estimate(graph);
  r.batch = std::move(batch);
  return r;
}

std::string report_to_text(const Graph& graph, const AnalysisReport& r, const std::string& model) {
  std::string s = fmt::format("model        {}\n", model);
  std::string inputs;
  for (ValueId v : graph.inputs()) inputs += (inputs.empty() ? "" : ", ") + graph.value(v).tensors.at(0).to_string();
  s += fmt::format("inputs       {}\n", inputs);
  s += fmt::format("nodes        {} ({} compute)\n", graph.num_nodes(), r.compute_nodes);
  s += fmt::format("parameters   {} ({}), buffers {}\n", format_count(static_cast<double>(r.params)),
                   format_bytes(r.param_bytes), format_count(static_cast<double>(r.buffer_elements)));
  s += fmt::format("forward      {}\n", format_flops(r.flops));
  s += fmt::format("activations  {} produced by one forward\n", format_bytes(r.activation_bytes));
  s += "top ops by FLOPs:\n";
  for (size_t i = 0; i < std::min<size_t>(r.top_ops.size(), 6); ++i) {
    const auto& o = r.top_ops[i];
    s += fmt::format("  {:<28} x{:<4} {:>14}  {:5.1f}%\n", o.op, o.count, format_flops(o.flops),
                     r.flops.value() > 0 ? 100.0 * o.flops.value() / r.flops.value() : 0.0);
  }
  if (!r.no_estimate.empty()) {
    std::string ops;
    for (const auto& o : r.no_estimate) ops += (ops.empty() ? "" : ", ") + o;
    s += fmt::format("no estimate  {} (they run; their cost is unknown, not zero)\n", ops);
  }
  s += fmt::format("batch split  {} (checked by running at batch {} and {})\n",
                   r.batch.splittable() ? "safe" : "NOT safe", r.batch.batch, r.batch.second_batch);
  for (const auto& p : r.batch.problems) {
    s += fmt::format("  node {} {}: {}{}\n", p.node, graph.node(p.node).op, batch_behavior_name(p.behavior),
                     p.detail.empty() ? "" : " — " + p.detail);
  }
  return s;
}

Json report_to_json(const Graph& graph, const AnalysisReport& r) {
  Json j;
  j["params"] = r.params;
  j["buffer_elements"] = r.buffer_elements;
  j["param_bytes"] = r.param_bytes.value();
  j["flops"] = r.flops.value();
  j["activation_bytes"] = r.activation_bytes.value();
  j["no_estimate"] = r.no_estimate;
  Json batch;
  batch["splittable"] = r.batch.splittable();
  batch["batch"] = r.batch.batch;
  batch["second_batch"] = r.batch.second_batch;
  batch["problems"] = Json::array();
  for (const auto& p : r.batch.problems) {
    batch["problems"].push_back(
        {{"node", p.node}, {"behavior", std::string(batch_behavior_name(p.behavior))}, {"detail", p.detail}});
  }
  j["batch_check"] = batch;
  Json nodes = Json::array();
  for (const Node& n : graph.nodes()) {
    Json out_shapes = Json::array();
    for (ValueId v : n.outputs) {
      for (const auto& t : graph.value(v).tensors) out_shapes.push_back(t.shape);
    }
    const char* status = n.cost.status == CostStatus::kEstimated    ? "estimated"
                         : n.cost.status == CostStatus::kStructural ? "structural"
                                                                    : "no estimate";
    nodes.push_back({{"id", n.id},
                     {"op", n.op},
                     {"scope", n.scope},
                     {"flops", n.cost.flops.value()},
                     {"cost", status},
                     {"outputs", out_shapes}});
  }
  j["nodes"] = nodes;
  return j;
}

}  // namespace partita::app

#include "analyze_report.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "partita/core/format.h"
#include "partita/graph/op_cost.h"
#include "partita/runtime/engine.h"
#include "partita/search/tensor_model.h"

namespace partita::app {

namespace {
const char* tensor_parallel_name(TensorParallel t) {
  switch (t) {
    case TensorParallel::kColumnRow:
      return "column/row";
    case TensorParallel::kOutputChannel:
      return "output channels";
    case TensorParallel::kHeads:
      return "heads";
    case TensorParallel::kNone:
      break;
  }
  return "none";
}

// A branch's work: its FLOPs and the bytes its nodes read and write (an embedding lookup is 0 FLOP of real,
// memory-bound work).
struct BranchWork {
  Flops flops{0};
  Bytes moved{0};
};
BranchWork branch_work(const Graph& g, const Branch& b) {
  BranchWork w;
  for (NodeId n : b.nodes) {
    w.flops += g.node(n).cost.flops;
    w.moved += g.node(n).cost.bytes_read + g.node(n).cost.bytes_written;
  }
  return w;
}
}  // namespace

AnalysisReport make_analysis_report(const Graph& graph, BatchCheckResult batch, int cuts) {
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

  std::vector<Seconds> work;
  for (const Node& n : graph.nodes()) work.push_back(Seconds(n.cost.flops.value()));
  r.critical = critical_path(graph, work);
  for (auto& region : independent_branches(graph)) {
    if (region.non_trivial_branches() >= 2) r.branches.push_back(std::move(region));
  }
  if (graph.num_nodes() > 1) r.cuts = best_cut_points(graph, std::min(cuts, graph.num_nodes() - 1));
  r.inference = analyze_parallelism(graph, ExecutionMode::kInference);
  const auto training = analyze_parallelism(graph, ExecutionMode::kTraining);
  for (size_t i = 0; i < training.size(); ++i) {
    if (r.inference[i].batch_splittable && !training[i].batch_splittable)
      r.unsafe_in_training.push_back(training[i].node);
    if (r.inference[i].tensor_parallel != TensorParallel::kNone) ++r.tensor_parallel_candidates;
  }
  for (const TensorRole role : tensor_roles(graph)) {
    r.column_splits += role == TensorRole::kColumn;
    r.row_splits += role == TensorRole::kRow;
    r.vocabulary_splits += role == TensorRole::kVocabulary;
  }
  if (r.column_splits + r.vocabulary_splits > 0) {
    for (int degree : {2, 4, 8})
      r.tensor_degrees.emplace_back(degree, tensor_parallel_refusal(graph, degree));
  }
  return r;
}

std::string report_to_text(const Graph& graph, const AnalysisReport& r, const std::string& model) {
  std::string s = fmt::format("model        {}\n", model);
  std::string inputs;
  for (ValueId v : graph.inputs())
    inputs += (inputs.empty() ? "" : ", ") + graph.value(v).tensors.at(0).to_string() +
              (graph.value(v).shared ? " (shared: no batch)" : "");
  s += fmt::format("inputs       {}\n", inputs);
  std::string outputs;
  for (ValueId v : graph.outputs()) {
    for (const auto& t : graph.value(v).tensors) outputs += (outputs.empty() ? "" : ", ") + t.to_string();
  }
  if (!r.output_keys.empty()) {
    outputs +=
        fmt::format(" (the values of the dict forward() returns, keys {}; training's loss reads the first)",
                    fmt::join(r.output_keys, ", "));
  }
  s += fmt::format("outputs      {}\n", outputs);
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
  const double total = std::max(r.flops.value(), 1.0);
  s += fmt::format(
      "critical path {} nodes, {:.1f}% of the FLOPs (branch parallelism can give at most {:.2f}x)\n",
      r.critical.nodes.size(), 100.0 * r.critical.length.value() / total,
      total / std::max(r.critical.length.value(), 1.0));
  s += fmt::format("branches     {} region(s) with >= 2 independent non-trivial branches\n",
                   r.branches.size());
  for (size_t i = 0; i < std::min<size_t>(r.branches.size(), 5); ++i) {
    const auto& region = r.branches[i];
    std::string shares;
    for (const auto& b : region.branches) {
      const BranchWork w = branch_work(graph, b);
      shares += (shares.empty() ? "" : " | ") + format_flops(w.flops) + ", " + format_bytes(w.moved);
    }
    s += fmt::format(
        "  fork {} -> join {}: {} branches (FLOPs, bytes moved: {})\n",
        region.fork == kNoNode ? "input" : graph.node(region.fork).op + " #" + std::to_string(region.fork),
        region.join == kNoNode ? "outputs" : graph.node(region.join).op + " #" + std::to_string(region.join),
        region.branches.size(), shares);
  }
  s += "pipeline cuts (fewest bytes crossing near an even split of FLOPs):\n";
  for (const auto& c : r.cuts) {
    s += fmt::format("  after node {:<5} {:<24} {:>12} crossing, {:5.1f}% of FLOPs before\n", c.after_node,
                     graph.node(c.after_node).op, format_bytes(c.bytes),
                     100.0 * c.flops_before.value() / total);
  }
  s += fmt::format("tensor-parallel candidates {} node(s)\n", r.tensor_parallel_candidates);
  if (!r.tensor_degrees.empty()) {
    s += fmt::format(
        "tensor split   {} column-split and {} row-split weight matmul(s), {} embedding table(s) by rows{}\n",
        r.column_splits, r.row_splits, r.vocabulary_splits,
        r.column_splits > r.row_splits ? " (the last pair's output gathered)" : "");
    for (const auto& [degree, refusal] : r.tensor_degrees)
      s += fmt::format("  {}-way: {}\n", degree, refusal ? "not run: " + *refusal : "partita run splits it");
  }
  int not_splittable = 0;
  for (const auto& p : r.inference) not_splittable += p.batch_splittable ? 0 : 1;
  if (not_splittable > 0) {
    s += fmt::format(
        "static check {} node(s) not batch-splittable, if the batch stays in dim 0 (the run below "
        "decides):\n",
        not_splittable);
    int shown = 0;
    for (const auto& p : r.inference) {
      if (!p.batch_splittable && shown++ < 5)
        s += fmt::format("  node {} {}: {}\n", p.node, graph.node(p.node).op, p.reason);
    }
  }
  if (!r.unsafe_in_training.empty()) {
    s += fmt::format(
        "training     {} batch_norm node(s) compute batch statistics: data-parallel replicas see "
        "different statistics than one device would\n",
        r.unsafe_in_training.size());
  }
  s += fmt::format(
      "batch split  {} (checked by running at batch {} and {}{})\n",
      r.batch.splittable() ? "safe" : "NOT safe", r.batch.batch, r.batch.second_batch,
      r.batch.halves_agree() ? ", and two halves of a batch, which gave the whole batch's outputs" : "");
  for (const auto& p : r.batch.problems) {
    s += fmt::format("  node {} {}: {}{}\n", p.node, graph.node(p.node).op, batch_behavior_name(p.behavior),
                     p.detail.empty() ? "" : " — " + p.detail);
  }
  if (!r.batch.halves_detail.empty()) s += "  run in two halves: " + r.batch.halves_detail + "\n";
  if (!r.batch.random_draws.empty()) {
    std::string nodes;
    for (size_t i = 0; i < r.batch.random_draws.size() && i < 3; ++i) {
      const NodeId id = r.batch.random_draws[i];
      nodes += fmt::format("{}node {} {}", i ? ", " : "", id, graph.node(id).op);
    }
    if (r.batch.random_draws.size() > 3) nodes += ", ...";
    s += fmt::format(
        "random draws {} node(s) besides dropout ({}): the split was checked with each float draw at its "
        "expected value; a replica or microbatch draws its own numbers\n",
        r.batch.random_draws.size(), nodes);
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
  if (!r.output_keys.empty()) j["output_keys"] = r.output_keys;
  Json batch;
  batch["splittable"] = r.batch.splittable();
  batch["halves_agree"] = r.batch.halves_agree();
  if (!r.batch.halves_detail.empty()) batch["halves_detail"] = r.batch.halves_detail;
  batch["random_draws"] = r.batch.random_draws;
  batch["batch"] = r.batch.batch;
  batch["second_batch"] = r.batch.second_batch;
  batch["problems"] = Json::array();
  for (const auto& p : r.batch.problems) {
    batch["problems"].push_back(
        {{"node", p.node}, {"behavior", std::string(batch_behavior_name(p.behavior))}, {"detail", p.detail}});
  }
  j["batch_check"] = batch;
  j["critical_path"] = {{"nodes", r.critical.nodes}, {"flops", r.critical.length.value()}};
  Json branches = Json::array();
  for (const auto& region : r.branches) {
    Json bs = Json::array();
    for (const auto& b : region.branches) {
      const BranchWork w = branch_work(graph, b);
      bs.push_back({{"nodes", b.nodes}, {"flops", w.flops.value()}, {"bytes_moved", w.moved.value()}});
    }
    branches.push_back({{"fork", region.fork}, {"join", region.join}, {"branches", bs}});
  }
  j["branches"] = branches;
  Json cuts = Json::array();
  for (const auto& c : r.cuts) {
    cuts.push_back(
        {{"after_node", c.after_node}, {"bytes", c.bytes.value()}, {"flops_before", c.flops_before.value()}});
  }
  j["cut_points"] = cuts;
  j["unsafe_in_training"] = r.unsafe_in_training;
  Json degrees = Json::object();
  for (const auto& [degree, refusal] : r.tensor_degrees)
    degrees[std::to_string(degree)] = refusal ? Json(*refusal) : Json(nullptr);
  j["tensor_split"] = {{"column", r.column_splits},
                       {"row", r.row_splits},
                       {"vocabulary", r.vocabulary_splits},
                       {"refusal_by_degree", degrees}};
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
                     {"batch_splittable", r.inference[n.id].batch_splittable},
                     {"tensor_parallel", tensor_parallel_name(r.inference[n.id].tensor_parallel)},
                     {"outputs", out_shapes}});
  }
  j["nodes"] = nodes;
  return j;
}

}  // namespace partita::app

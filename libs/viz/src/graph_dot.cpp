#include "partita/viz/graph_dot.h"

#include <algorithm>

#include <fmt/format.h>

#include "partita/core/format.h"

namespace partita {

namespace {
std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string shape_label(const Value& v) {
  if (v.tensors.empty()) return "";
  return v.tensors.size() == 1 ? v.tensors[0].to_string() : fmt::format("{} tensors", v.tensors.size());
}
}  // namespace

std::string graph_to_dot(const Graph& graph, const DotOptions& options) {
  std::string out =
      "digraph partita {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n";
  const int shown = std::min(graph.num_nodes(), options.max_nodes);
  for (size_t i = 0; i < graph.inputs().size(); ++i) {
    const Value& v = graph.value(graph.inputs()[i]);
    out += fmt::format("  v{} [label=\"input {}\\n{}\", shape=ellipse];\n", v.id, escape(v.name),
                       shape_label(v));
  }
  for (int i = 0; i < shown; ++i) {
    const Node& n = graph.node(i);
    const std::string shape = n.outputs.empty() ? "" : shape_label(graph.value(n.outputs[0]));
    if (n.cost.status == CostStatus::kStructural) {
      out +=
          fmt::format("  n{} [label=\"{}\", fontsize=8, color=grey, fontcolor=grey];\n", n.id, escape(n.op));
    } else {
      const std::string flops =
          n.cost.status == CostStatus::kNoEstimate ? "no estimate" : format_flops(n.cost.flops);
      out += fmt::format("  n{} [label=\"{}\\n{}\\n{}\\n{}\"];\n", n.id, escape(n.op), escape(n.scope), shape,
                         flops);
    }
  }
  for (int i = 0; i < shown; ++i) {
    const Node& n = graph.node(i);
    for (ValueId in : n.inputs) {
      const Value& v = graph.value(in);
      if (v.producer != kNoNode) {
        out += fmt::format("  n{} -> n{};\n", v.producer, n.id);
      } else if (v.role == ValueRole::kInput) {
        out += fmt::format("  v{} -> n{};\n", v.id, n.id);
      }
    }
  }
  if (shown < graph.num_nodes()) {
    out += fmt::format("  truncated [label=\"{} more nodes not drawn\", shape=note];\n",
                       graph.num_nodes() - shown);
  }
  out += "}\n";
  return out;
}

}  // namespace partita

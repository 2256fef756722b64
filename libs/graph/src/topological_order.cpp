#include <algorithm>
#include <functional>
#include <queue>

#include "partita/core/error.h"
#include "partita/graph/analysis.h"

namespace partita {

namespace {
void sort_unique(std::vector<NodeId>& ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
}
}  // namespace

std::vector<std::vector<NodeId>> node_predecessors(const Graph& graph) {
  std::vector<std::vector<NodeId>> preds(graph.nodes().size());
  for (const auto& n : graph.nodes()) {
    for (ValueId in : n.inputs) {
      const NodeId p = graph.value(in).producer;
      if (p != kNoNode) preds[n.id].push_back(p);
    }
    sort_unique(preds[n.id]);
  }
  return preds;
}

std::vector<std::vector<NodeId>> node_successors(const Graph& graph) {
  std::vector<std::vector<NodeId>> succs(graph.nodes().size());
  for (const auto& n : graph.nodes()) {
    for (ValueId out : n.outputs) {
      const auto& users = graph.value(out).users;
      succs[n.id].insert(succs[n.id].end(), users.begin(), users.end());
    }
    sort_unique(succs[n.id]);
  }
  return succs;
}

std::vector<NodeId> topological_order(const Graph& graph) {
  const auto preds = node_predecessors(graph);
  const auto succs = node_successors(graph);
  std::vector<int> waiting(preds.size());
  std::priority_queue<NodeId, std::vector<NodeId>, std::greater<>> ready;
  for (size_t i = 0; i < preds.size(); ++i) {
    waiting[i] = static_cast<int>(preds[i].size());
    if (waiting[i] == 0) ready.push(static_cast<NodeId>(i));
  }
  std::vector<NodeId> order;
  order.reserve(preds.size());
  while (!ready.empty()) {
    const NodeId n = ready.top();
    ready.pop();
    order.push_back(n);
    for (NodeId s : succs[n]) {
      if (--waiting[s] == 0) ready.push(s);
    }
  }
  PARTITA_CHECK(order.size() == preds.size(), "the graph has a dependency cycle: only ", order.size(), " of ",
                preds.size(), " nodes can be ordered (check the importer's output)");
  return order;
}

}  // namespace partita

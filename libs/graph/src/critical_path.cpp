#include <algorithm>

#include "partita/core/error.h"
#include "partita/graph/analysis.h"

namespace partita {

CriticalPath critical_path(const Graph& graph, std::span<const Seconds> node_cost) {
  PARTITA_CHECK(node_cost.size() == graph.nodes().size(), "critical_path: got ", node_cost.size(),
                " node costs for a graph of ", graph.num_nodes(), " nodes");
  const auto preds = node_predecessors(graph);
  // finish[n]: heaviest chain ending at n (inclusive); via[n]: its predecessor on that chain.
  std::vector<Seconds> finish(preds.size(), Seconds(0));
  std::vector<NodeId> via(preds.size(), kNoNode);
  for (NodeId n : topological_order(graph)) {
    Seconds best(0);
    for (NodeId p : preds[n]) {  // sorted ascending: strict '>' keeps the smallest id on ties
      if (via[n] == kNoNode || finish[p] > best) {
        best = finish[p];
        via[n] = p;
      }
    }
    finish[n] = best + node_cost[n];
  }
  CriticalPath path;
  NodeId end = kNoNode;
  for (size_t n = 0; n < finish.size(); ++n) {
    if (end == kNoNode || finish[n] > finish[end]) end = static_cast<NodeId>(n);
  }
  if (end == kNoNode) return path;
  path.length = finish[end];
  for (NodeId n = end; n != kNoNode; n = via[n]) path.nodes.push_back(n);
  std::reverse(path.nodes.begin(), path.nodes.end());
  return path;
}

}  // namespace partita

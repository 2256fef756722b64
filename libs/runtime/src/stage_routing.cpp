#include "partita/runtime/stage_routing.h"

#include <set>

#include "partita/graph/analysis.h"

namespace partita {

StageRouting route_stages(const Graph& graph, const Plan& plan) {
  const int stages = static_cast<int>(plan.stages.size());
  StageRouting r;
  r.stage_of_node.assign(graph.num_nodes(), -1);
  for (int s = 0; s < stages; ++s) {
    for (NodeId n = plan.stages[s].first; n <= plan.stages[s].last; ++n) r.stage_of_node[n] = s;
  }
  r.sends.assign(stages, std::vector<std::vector<ValueId>>(stages));
  r.mutated.assign(stages, std::vector<bool>(graph.num_values(), false));
  std::set<ValueId> outputs(graph.outputs().begin(), graph.outputs().end());
  for (const Value& v : graph.values()) {
    if (v.producer == kNoNode) continue;
    const int p = r.stage_of_node[v.producer];
    std::set<int> consumers;
    for (NodeId u : v.users) consumers.insert(r.stage_of_node[u]);
    if (outputs.count(v.id)) consumers.insert(stages - 1);
    for (int t : consumers) {
      if (t > p) r.sends[p][t].push_back(v.id);
    }
  }
  for (const Node& n : graph.nodes()) {
    if (!n.op.empty() && n.op.back() == '_' && !n.inputs.empty())
      r.mutated[r.stage_of_node[n.id]][n.inputs[0]] = true;
  }
  r.batch_major = batch_major(graph);
  r.hybrid_crossable = hybrid_crossable(graph);
  return r;
}

}  // namespace partita

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
  r.batch_dependent = batch_dependent(graph);
  r.batch_major.assign(graph.num_values(), false);
  const TensorMeta* input = graph.inputs().empty() ? nullptr : graph.value(graph.inputs()[0]).meta();
  if (input != nullptr && !input->shape.empty()) {
    for (const Value& v : graph.values()) {
      const TensorMeta* m = v.kind == ValueKind::kTensor ? v.meta() : nullptr;
      r.batch_major[v.id] =
          r.batch_dependent[v.id] && m != nullptr && !m->shape.empty() && m->shape[0] == input->shape[0];
    }
  }
  return r;
}

}  // namespace partita

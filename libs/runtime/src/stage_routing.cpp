#include "partita/runtime/stage_routing.h"

#include <algorithm>
#include <set>

#include "partita/graph/analysis.h"
#include "partita/graph/op_names.h"

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
  // A write through a view writes its root too: a received root must be copied as well. A user input so
  // written is sent from the writing stage to the later stages that read it: each stage otherwise starts
  // from its own copy of the batch and would not see the write (a trace records x[:, :8].mul_(0.5) on a view
  // and leaves later readers reading x).
  const std::vector<ValueId> root = storage_roots(graph);
  std::vector<std::vector<ValueId>> aliases(graph.num_values());  // [root] every value sharing its storage
  for (const Value& v : graph.values()) aliases[root[v.id]].push_back(v.id);
  std::vector<int> first_writer(graph.num_values(), stages);
  for (const Node& n : graph.nodes()) {
    if (!is_in_place_op(n.op) || n.inputs.empty()) continue;
    const int s = r.stage_of_node[n.id];
    for (ValueId alias : aliases[root[n.inputs[0]]]) r.mutated[s][alias] = true;
    first_writer[root[n.inputs[0]]] = std::min(first_writer[root[n.inputs[0]]], s);
  }
  for (ValueId x : graph.inputs()) {
    if (first_writer[x] == stages) continue;
    std::set<int> readers;
    for (NodeId u : graph.value(x).users) readers.insert(r.stage_of_node[u]);
    for (int t : readers) {
      if (t <= first_writer[x]) continue;
      auto& to = r.sends[first_writer[x]][t];
      to.insert(std::lower_bound(to.begin(), to.end(), x), x);
    }
  }
  // Only a problem when stage t or a later one also reads the input itself (x.float().div_(255) sent on and
  // nothing else reading x is not).
  const auto reads_input_from = [&](ValueId x, int t) {
    const auto& users = graph.value(x).users;
    return std::any_of(users.begin(), users.end(), [&](NodeId u) { return r.stage_of_node[u] >= t; });
  };
  for (int p = 0; p < stages; ++p) {
    for (int t = p + 1; t < stages; ++t) {
      for (ValueId v : r.sends[p][t]) {
        const ValueId base = root[v];
        if (r.mutated[t][v] && base != v && graph.value(base).role == ValueRole::kInput &&
            reads_input_from(base, t) && !r.input_view_written_downstream) {
          r.input_view_written_downstream = StageRouting::InputViewWrite{v, t};
        }
      }
    }
  }
  r.storage_root = root;
  r.batch_major = batch_major(graph);
  r.hybrid_crossable = hybrid_crossable(graph);
  return r;
}

}  // namespace partita

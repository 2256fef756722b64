#include "partita/runtime/stage_routing.h"

#include <algorithm>
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
  // In-place writes (graph/analysis.h's written_storages). A stage that writes a storage gets its own copy of
  // every member it receives. It must hold the storage as one copy: members received separately (or a
  // received view beside its own copy of a user input) would each be copied, and the write would reach one
  // of them only. What a later stage reads of the storage comes from the last stage before it that wrote it
  // (a trace leaves later nodes reading z or x themselves after z[:, 16:] = b or x[:, :8].mul_(0.5)).
  const std::vector<ValueId> root = storage_roots(graph);
  for (const WrittenStorage& s : written_storages(graph)) {
    std::vector<bool> writes_in(stages, false);
    for (NodeId w : s.writes) writes_in[r.stage_of_node[w]] = true;
    const auto split_at = [&](int t) {
      const NodeId first = plan.stages[t].first;
      std::vector<ValueId> copies;
      if (first > 0) copies = copies_across_cut(graph, s, first - 1);
      const NodeId write =
          *std::find_if(s.writes.begin(), s.writes.end(), [&](NodeId w) { return r.stage_of_node[w] == t; });
      if (copies.size() >= 2 && !r.split_storage_write)
        r.split_storage_write = StageRouting::SplitStorageWrite{t, write, std::move(copies)};
    };
    for (int t = 0; t < stages; ++t) {
      if (!writes_in[t]) continue;
      for (ValueId v : s.members) r.mutated[t][v] = true;
      split_at(t);
    }
    if (r.split_storage_write) continue;
    for (ValueId v : s.members) {
      const Value& value = graph.value(v);
      const bool input = value.role == ValueRole::kInput;
      if (value.producer == kNoNode && !input) continue;
      const int p = input ? -1 : r.stage_of_node[value.producer];
      std::set<int> readers;
      for (NodeId u : value.users) readers.insert(r.stage_of_node[u]);
      if (outputs.count(v)) readers.insert(stages - 1);
      for (int u : readers) {
        int t = u - 1;
        while (t > p && !writes_in[t]) --t;
        if (t <= p) continue;
        // Stage t wrote the storage after v was made: v must come from there (one copy: t read v itself).
        if (!input && !readers.count(t)) {
          split_at(t);
          continue;
        }
        if (p >= 0) {
          auto& from = r.sends[p][u];
          from.erase(std::remove(from.begin(), from.end(), v), from.end());
        }
        auto& to = r.sends[t][u];
        const auto at = std::lower_bound(to.begin(), to.end(), v);
        if (at == to.end() || *at != v) to.insert(at, v);
      }
    }
  }
  r.storage_root = root;
  r.batch_major = batch_major(graph);
  r.hybrid_crossable = hybrid_crossable(graph);
  return r;
}

}  // namespace partita

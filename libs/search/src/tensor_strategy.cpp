#include "partita/search/tensor_strategy.h"

#include <algorithm>
#include <map>

#include "partita/cost/comm.h"
#include "partita/search/chain_plan.h"
#include "partita/search/tensor_model.h"

namespace partita {

std::vector<Plan> tensor_candidates(const StageModel& model) {
  const TensorModel tensor(model);
  const NodeId last = model.num_nodes() - 1;
  if (!tensor.has_split(0, last)) return {};
  // Devices by (node, spec), in cluster order.
  std::map<std::pair<std::string, int>, std::vector<int>> by_node_kind;
  const auto& devs = model.cluster().devices;
  for (int d = 0; d < model.num_devices(); ++d)
    by_node_kind[{devs[static_cast<size_t>(d)].node, model.spec_of(d)}].push_back(d);
  struct Scored {
    Seconds estimate;
    Plan plan;
  };
  std::vector<Scored> scored;
  std::map<std::pair<int, int>, bool> seen;  // (spec, p): one group per kind and size is enough
  for (const auto& [key, members] : by_node_kind) {
    const int spec = key.second;
    for (int p = 2; p <= static_cast<int>(members.size()); p *= 2) {
      if (seen[{spec, p}]) continue;
      seen[{spec, p}] = true;
      std::vector<std::string> ids;
      for (int i = 0; i < p; ++i)
        ids.push_back(devs[static_cast<size_t>(members[static_cast<size_t>(i)])].id);
      const LinkSpec ring = slowest_link(model.cluster(), ids);
      Bytes cap = model.memory_cap(members[0]);
      for (int i = 1; i < p; ++i) cap = std::min(cap, model.memory_cap(members[static_cast<size_t>(i)]));
      for (int m : microbatch_candidates(model.options(), 1)) {
        const int mb = model.options().global_batch / m;
        if (tensor.memory(0, last, mb, p, 1, members[0], m) > cap) continue;
        Seconds per = tensor.forward(spec, 0, last, mb, p, ring);
        if (model.training()) per += tensor.backward(spec, 0, last, mb, p, ring);
        Plan plan = empty_plan(model, StrategyKind::kTensor);
        plan.microbatches = m;
        plan.schedule = Schedule::kOneFOneB;
        plan.groups.push_back(
            DeviceGroup{ids, std::vector<int>(static_cast<size_t>(p), mb), GroupParallelism::kTensor});
        Stage st;
        st.first = 0;
        st.last = last;
        plan.stages.push_back(st);
        mark_unused_devices(plan, model.cluster(),
                            "not in the tensor-parallel group (one group of one kind on one node)");
        scored.push_back(Scored{per * static_cast<double>(m), std::move(plan)});
        break;  // more microbatches only add per-step time once the activations fit
      }
    }
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const Scored& a, const Scored& b) { return a.estimate < b.estimate; });
  std::vector<Plan> out;
  for (auto& s : scored) out.push_back(std::move(s.plan));
  return out;
}

}  // namespace partita

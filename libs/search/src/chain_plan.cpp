#include "partita/search/chain_plan.h"

#include <algorithm>
#include <set>

namespace partita {

std::vector<int> microbatch_candidates(const SearchOptions& options, int min_microbatch_size) {
  std::vector<int> out;
  if (options.microbatches > 0) {
    if (options.global_batch / options.microbatches >= min_microbatch_size)
      out.push_back(options.microbatches);
    return out;
  }
  for (int m = 1; m <= std::min(options.global_batch, options.max_microbatches); ++m) {
    if (options.global_batch % m == 0 && options.global_batch / m >= min_microbatch_size) out.push_back(m);
  }
  return out;
}

Plan empty_plan(const StageModel& model, StrategyKind strategy) {
  Plan plan;
  plan.graph = graph_identity(model.graph());
  plan.mode = model.options().mode;
  plan.strategy = strategy;
  plan.optimizer = model.options().optimizer;
  plan.loss = model.options().loss;
  plan.global_batch = model.options().global_batch;
  return plan;
}

Plan chain_to_plan(const ChainProblem& problem, const ChainSolution& solution, StrategyKind strategy) {
  const StageModel& model = *problem.model;
  Plan plan = empty_plan(model, strategy);
  plan.schedule = problem.schedule;
  plan.microbatches = problem.microbatches;
  for (size_t j = 0; j < problem.slots.size(); ++j) {
    DeviceGroup g;
    for (int d : problem.slots[j].devices)
      g.devices.push_back(model.cluster().devices[static_cast<size_t>(d)].id);
    const ChainSlot& slot = problem.slots[j];
    if (slot.tensor_size > 1) {
      g.parallelism = GroupParallelism::kTensor;
      g.tensor_size = slot.tensor_size;
      for (int share : even_shares(problem.microbatch_size, slot.replicas()))
        g.batch_shares.insert(g.batch_shares.end(), static_cast<size_t>(slot.tensor_size), share);
    } else {
      g.batch_shares = even_shares(problem.microbatch_size, static_cast<int>(g.devices.size()));
    }
    plan.groups.push_back(std::move(g));
    const StageChoice& st = solution.stages[j];
    plan.stages.push_back(Stage{st.first, st.last, static_cast<int>(j), st.checkpointing, st.offload});
  }
  return plan;
}

void mark_unused_devices(Plan& plan, const Cluster& cluster, const std::string& reason) {
  const auto used = plan.used_devices();
  const std::set<std::string> in(used.begin(), used.end());
  for (const auto& d : cluster.devices) {
    const bool listed = std::any_of(plan.unused_devices.begin(), plan.unused_devices.end(),
                                    [&](const UnusedDevice& u) { return u.device == d.id; });
    if (!in.count(d.id) && !listed) plan.unused_devices.push_back(UnusedDevice{d.id, reason});
  }
}

std::vector<ChainSlot> single_device_slots(const StageModel& model, const std::vector<int>& order) {
  std::vector<ChainSlot> slots;
  const auto& devs = model.cluster().devices;
  for (size_t i = 0; i < order.size(); ++i) {
    ChainSlot s;
    s.devices = {order[i]};
    s.group_link = LinkSpec{"local", Seconds(0), BytesPerSecond(1e30), ""};
    s.next_link = i + 1 < order.size()
                      ? model.cluster().link_between(devs[static_cast<size_t>(order[i])].id,
                                                     devs[static_cast<size_t>(order[i + 1])].id)
                      : s.group_link;
    slots.push_back(std::move(s));
  }
  return slots;
}

}  // namespace partita

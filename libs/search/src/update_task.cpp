#include "update_task.h"

#include "partita/cost/update.h"

namespace partita::detail {

void add_update_task(TaskGraph& tg, const Plan& plan, const Graph& graph, const Cluster& cluster,
                     const SearchOptions& options) {
  if (plan.mode != Mode::kTraining) return;
  const ClusterDevice* where = nullptr;
  for (const std::string& id : plan.used_devices()) {
    const int index = cluster.index_of(id);
    if (index < 0) continue;
    const ClusterDevice& d = cluster.devices[static_cast<size_t>(index)];
    if (where == nullptr) where = &d;
    const bool cpu = d.spec.kind == DeviceKind::kCpu;
    const bool where_cpu = where->spec.kind == DeviceKind::kCpu;
    if ((cpu && !where_cpu) || (cpu && where_cpu && d.spec.cores > where->spec.cores)) where = &d;
  }
  if (where == nullptr) return;
  Seconds t(0);
  const auto measured = options.update_times.find(where->spec.name);
  if (measured != options.update_times.end()) {
    t = measured->second;
  } else {
    Bytes trainable(0);
    int tensors = 0;
    for (const auto& p : graph.parameters()) {
      if (!p.requires_grad) continue;
      trainable = trainable + graph.value(p.value).bytes();
      ++tensors;
    }
    t = optimizer_step_time(trainable, tensors, plan.optimizer, where->spec);
  }
  const int task =
      tg.add("update", TaskKind::kUpdate, tg.add_resource("update on " + where->id, -1), -1, -1, t);
  for (int x = 0; x < task; ++x) tg.depend(task, x);
  tg.enqueue(task);
}

}  // namespace partita::detail

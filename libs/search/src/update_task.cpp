#include "update_task.h"

#include <map>

#include "partita/cost/update.h"

namespace partita::detail {

namespace {

// Where the engine keeps a trainable parameter: the device of the one stage that reads it when that stage has
// one device, of a kind other than the CPU, and does not offload optimizer state; otherwise the host.
std::vector<int> parameter_places(const Plan& plan, const Graph& graph, const Cluster& cluster, int host) {
  const std::vector<std::vector<int>> stages_of = plan.parameter_stages(graph);
  std::vector<int> places;
  for (size_t i = 0; i < graph.parameters().size(); ++i) {
    if (!graph.parameters()[i].requires_grad) continue;
    const std::vector<int>& stages = stages_of[i];
    int place = host;
    if (stages.size() == 1) {
      const Stage& stage = plan.stages[static_cast<size_t>(stages[0])];
      const DeviceGroup& group = plan.groups[static_cast<size_t>(stage.group)];
      const int d = group.devices.size() == 1 ? cluster.index_of(group.devices[0]) : -1;
      if (d >= 0 && cluster.devices[static_cast<size_t>(d)].spec.kind != DeviceKind::kCpu &&
          !offloads_optimizer_state(stage.offload))
        place = d;
    }
    places.push_back(place);
  }
  return places;
}

}  // namespace

void add_update_task(TaskGraph& tg, const Plan& plan, const Graph& graph, const Cluster& cluster,
                     const SearchOptions& options) {
  if (plan.mode != Mode::kTraining) return;
  int host = -1;
  for (const std::string& id : plan.used_devices()) {
    const int index = cluster.index_of(id);
    if (index < 0) continue;
    if (host < 0) host = index;
    const DeviceSpec& d = cluster.devices[static_cast<size_t>(index)].spec;
    const DeviceSpec& h = cluster.devices[static_cast<size_t>(host)].spec;
    const bool cpu = d.kind == DeviceKind::kCpu, host_cpu = h.kind == DeviceKind::kCpu;
    if ((cpu && !host_cpu) || (cpu && host_cpu && d.cores > h.cores)) host = index;
  }
  if (host < 0) return;
  // A plan of GPUs only still has the host's CPU beside them: the cluster's CPU device on the first device's
  // node with the most cores, when the cluster describes one.
  const auto is_cpu = [&](int i) {
    return cluster.devices[static_cast<size_t>(i)].spec.kind == DeviceKind::kCpu;
  };
  if (!is_cpu(host)) {
    const std::string& node = cluster.devices[static_cast<size_t>(host)].node;
    int cpu = -1;
    for (int i = 0; i < static_cast<int>(cluster.devices.size()); ++i) {
      if (!is_cpu(i) || cluster.devices[static_cast<size_t>(i)].node != node) continue;
      if (cpu < 0 || cluster.devices[static_cast<size_t>(i)].spec.cores >
                         cluster.devices[static_cast<size_t>(cpu)].spec.cores)
        cpu = i;
    }
    if (cpu >= 0) host = cpu;
  }
  struct Share {
    Bytes bytes{0};
    int tensors = 0;
  };
  std::map<int, Share> shares;  // [cluster device] the parameters updated there
  Bytes trainable(0);
  const std::vector<int> places = parameter_places(plan, graph, cluster, host);
  size_t k = 0;
  for (const auto& p : graph.parameters()) {
    if (!p.requires_grad) continue;
    Share& s = shares[places[k++]];
    s.bytes = s.bytes + graph.value(p.value).bytes();
    ++s.tensors;
    trainable = trainable + graph.value(p.value).bytes();
  }
  const int before = tg.size();
  for (const auto& [device, share] : shares) {
    const ClusterDevice& d = cluster.devices[static_cast<size_t>(device)];
    Seconds t(0);
    const auto measured = options.update_times.find(d.spec.name);
    if (measured != options.update_times.end()) {  // measured over the whole model: its share
      const double fraction =
          trainable.value() > 0 ? static_cast<double>(share.bytes.value()) / trainable.value() : 1.0;
      t = Seconds(measured->second.value() * fraction);
    } else {
      t = optimizer_step_time(share.bytes, share.tensors, plan.optimizer, d.spec);
    }
    const int task = tg.add("update", TaskKind::kUpdate, tg.add_resource("update on " + d.id, -1), -1, -1, t);
    for (int x = 0; x < before; ++x) tg.depend(task, x);
    tg.enqueue(task);
  }
}

}  // namespace partita::detail

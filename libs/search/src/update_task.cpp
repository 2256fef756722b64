#include "update_task.h"

#include <algorithm>
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

std::optional<UpdateSplit> update_split(const Plan& plan, const Graph& graph, const Cluster& cluster) {
  if (plan.mode != Mode::kTraining || plan.processes != ProcessLayout::kOne) return std::nullopt;
  UpdateSplit split;
  std::vector<double> speeds;
  for (const std::string& id : plan.used_devices()) {
    const int d = cluster.index_of(id);
    if (d < 0) return std::nullopt;
    const ClusterDevice& device = cluster.devices[static_cast<size_t>(d)];
    const std::string& node =
        cluster.devices[static_cast<size_t>(split.devices.empty() ? d : split.devices[0])].node;
    if (device.spec.kind != DeviceKind::kCpu || device.node != node) return std::nullopt;
    const auto slowed = plan.source.device_slowdowns.find(id);
    const double slowdown = slowed == plan.source.device_slowdowns.end() ? 1.0 : slowed->second;
    split.devices.push_back(d);
    speeds.push_back(std::max(1, device.spec.cores) / slowdown);
  }
  if (split.devices.size() < 2) return std::nullopt;
  std::vector<Bytes> tensors;
  for (const auto& p : graph.parameters()) {
    if (p.requires_grad) tensors.push_back(graph.value(p.value).bytes());
  }
  split.part = split_update(tensors, speeds);
  return split;
}

void add_update_task(TaskGraph& tg, const Plan& plan, const Graph& graph, const Cluster& cluster,
                     const SearchOptions& options) {
  if (plan.mode != Mode::kTraining) return;
  Bytes trainable(0);
  int tensors = 0;
  for (const auto& p : graph.parameters()) {
    if (!p.requires_grad) continue;
    trainable = trainable + graph.value(p.value).bytes();
    ++tensors;
  }
  // A device's optimizer step over `bytes` of `count` tensors: its share of the measured whole-model step,
  // else the formula. The share: of the bytes, on a CPU of the bytes and kCpuUpdateTensorBytes per tensor
  // (cost/update.h).
  const auto update_time = [&](int device, Bytes bytes, int count) {
    const DeviceSpec& spec = cluster.devices[static_cast<size_t>(device)].spec;
    const auto measured = options.update_times.find(spec.name);
    if (measured != options.update_times.end()) {
      const double per_tensor =
          spec.kind == DeviceKind::kCpu ? static_cast<double>(kCpuUpdateTensorBytes.value()) : 0.0;
      const double whole = static_cast<double>(trainable.value()) + per_tensor * tensors;
      const double fraction =
          whole > 0 ? (static_cast<double>(bytes.value()) + per_tensor * count) / whole : 1.0;
      return Seconds(measured->second.value() * fraction);
    }
    return optimizer_step_time(bytes, count, plan.optimizer, spec);
  };
  const auto is_cpu = [&](int i) {
    return cluster.devices[static_cast<size_t>(i)].spec.kind == DeviceKind::kCpu;
  };
  // The engine's host worker: a CPU before any other device, then the most cores; among equals the one whose
  // whole-model step is fastest (a device planned slower, --device-slowdown or a rebalance, does not get it),
  // then the first. So the prediction does not depend on the order of the plan's groups.
  const auto better_host = [&](int candidate, int current) {
    if (current < 0) return true;
    if (is_cpu(candidate) != is_cpu(current)) return is_cpu(candidate);
    if (!is_cpu(candidate)) return false;
    const int a = cluster.devices[static_cast<size_t>(candidate)].spec.cores;
    const int b = cluster.devices[static_cast<size_t>(current)].spec.cores;
    if (a != b) return a > b;
    return update_time(candidate, trainable, tensors) < update_time(current, trainable, tensors);
  };
  int host = -1;
  for (const std::string& id : plan.used_devices()) {
    const int index = cluster.index_of(id);
    if (index >= 0 && better_host(index, host)) host = index;
  }
  if (host < 0) return;
  // A plan of GPUs only still has the host's CPU beside them: the cluster's CPU device on the first device's
  // node chosen as above, when the cluster describes one.
  if (!is_cpu(host)) {
    const std::string& node = cluster.devices[static_cast<size_t>(host)].node;
    int cpu = -1;
    for (int i = 0; i < static_cast<int>(cluster.devices.size()); ++i) {
      if (is_cpu(i) && cluster.devices[static_cast<size_t>(i)].node == node && better_host(i, cpu)) cpu = i;
    }
    if (cpu >= 0) host = cpu;
  }
  struct Share {
    Bytes bytes{0};
    int tensors = 0;
  };
  std::map<int, Share> shares;  // [cluster device] the parameters updated there
  std::vector<int> places;
  if (const std::optional<UpdateSplit> split = update_split(plan, graph, cluster)) {
    for (int part : split->part) places.push_back(split->devices[static_cast<size_t>(part)]);
  } else {
    places = parameter_places(plan, graph, cluster, host);
  }
  size_t k = 0;
  for (const auto& p : graph.parameters()) {
    if (!p.requires_grad) continue;
    Share& s = shares[places[k++]];
    s.bytes = s.bytes + graph.value(p.value).bytes();
    ++s.tensors;
  }
  const int before = tg.size();
  for (const auto& [device, share] : shares) {
    const ClusterDevice& d = cluster.devices[static_cast<size_t>(device)];
    const Seconds t = update_time(device, share.bytes, share.tensors);
    const int task = tg.add("update", TaskKind::kUpdate, tg.add_resource("update on " + d.id, -1), -1, -1, t);
    for (int x = 0; x < before; ++x) tg.depend(task, x);
    tg.enqueue(task);
  }
}

}  // namespace partita::detail

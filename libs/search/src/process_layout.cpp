#include "partita/search/process_layout.h"

#include "partita/core/error.h"

namespace partita {

std::vector<int> launch_process_of_devices(const Plan& plan) {
  std::vector<int> process;
  if (plan.stages.size() == 1) {
    const auto& devices = plan.groups.at(static_cast<size_t>(plan.stages[0].group)).devices;
    for (size_t d = 0; d < devices.size(); ++d) process.push_back(static_cast<int>(d));
    return process;
  }
  // used_devices() lists devices in group order; a group belongs to one stage.
  for (size_t g = 0; g < plan.groups.size(); ++g) {
    int stage = -1;
    for (size_t s = 0; s < plan.stages.size(); ++s) {
      if (plan.stages[s].group == static_cast<int>(g)) stage = static_cast<int>(s);
    }
    PARTITA_ASSERT(stage >= 0, "device group ", g, " runs no stage");
    for (size_t d = 0; d < plan.groups[g].devices.size(); ++d) process.push_back(stage);
  }
  return process;
}

LinkSpec links_in_series(const LinkSpec& first, const LinkSpec& second) {
  PARTITA_CHECK(first.bandwidth.value() > 0 && second.bandwidth.value() > 0, "links '", first.name, "' and '",
                second.name, "' in series: a bandwidth is not positive (", first.bandwidth.value(), ", ",
                second.bandwidth.value(), " B/s)");
  const double per_byte = 1.0 / first.bandwidth.value() + 1.0 / second.bandwidth.value();
  return LinkSpec{first.name + " + " + second.name, first.latency + second.latency,
                  BytesPerSecond(1.0 / per_byte), first.source + "; " + second.source};
}

namespace {

// `cluster` with explicit links, through `between`, joining every two of `devices` (cluster indices) that
// share a machine and for which apart(a, b) holds (a < b, positions in `devices`).
template <typename Apart>
Cluster with_process_links(const Cluster& cluster, const std::vector<int>& devices, const LinkSpec& between,
                           Apart apart) {
  std::vector<ClusterLink> added;
  for (size_t a = 0; a < devices.size(); ++a) {
    for (size_t b = a + 1; b < devices.size(); ++b) {
      const ClusterDevice& da = cluster.devices[static_cast<size_t>(devices[a])];
      const ClusterDevice& db = cluster.devices[static_cast<size_t>(devices[b])];
      if (!apart(a, b) || da.node != db.node || da.id == db.id) continue;
      const bool cpus = da.spec.kind == DeviceKind::kCpu && db.spec.kind == DeviceKind::kCpu;
      const LinkSpec link = cpus ? between : links_in_series(cluster.link_between(da.id, db.id), between);
      added.push_back(ClusterLink{da.id, db.id, link});
    }
  }
  // link_between returns the first explicit link it finds: ours go in front of the cluster's.
  Cluster out = cluster;
  added.insert(added.end(), cluster.links.begin(), cluster.links.end());
  out.links = std::move(added);
  return out;
}

}  // namespace

Cluster cluster_across_processes(const Cluster& cluster, const Plan& plan, const LinkSpec& between) {
  const std::vector<std::string> devices = plan.used_devices();
  const std::vector<int> process = launch_process_of_devices(plan);
  PARTITA_ASSERT(devices.size() == process.size(), "one process per used device");
  std::vector<int> index;
  for (const auto& id : devices) {
    const int i = cluster.index_of(id);
    PARTITA_CHECK(i >= 0, "plan: device ", id, " is not in the cluster '", cluster.name,
                  "'; plan for this cluster's devices");
    index.push_back(i);
  }
  return with_process_links(cluster, index, between,
                            [&](size_t a, size_t b) { return process[a] != process[b]; });
}

Cluster cluster_of_separate_processes(const Cluster& cluster, const LinkSpec& between) {
  std::vector<int> index(cluster.devices.size());
  for (size_t i = 0; i < index.size(); ++i) index[i] = static_cast<int>(i);
  return with_process_links(cluster, index, between, [](size_t, size_t) { return true; });
}

}  // namespace partita

#include "partita/hardware/local_cluster.h"

#include <algorithm>

#include "partita/core/error.h"
#include "partita/hardware/cpu_spec.h"

namespace partita {

void LocalClusterOptions::validate() const {
  PARTITA_CHECK(cores_per_group >= 1, "cores_per_group is ", cores_per_group, "; use 1 or more");
  PARTITA_CHECK(!node.empty(), "the local node name is empty; give it a name like 'localhost'");
}

Cluster make_local_cluster(const DeviceSpec& cpu_spec, const LocalClusterOptions& options) {
  options.validate();
  Cluster cluster;
  cluster.name = options.node;
  cluster.intra_node_link = shared_memory_link(cpu_spec);
  switch (options.cpu_partition) {
    case CpuPartition::kNone:
      break;
    case CpuPartition::kWholeCpu:
      cluster.devices.push_back(ClusterDevice{"cpu", options.node, cpu_spec});
      break;
    case CpuPartition::kCoreGroups: {
      PARTITA_CHECK(cpu_spec.cores >= 1, "cannot split '", cpu_spec.name,
                    "' into core groups: cores = ", cpu_spec.cores);
      for (int first = 0; first < cpu_spec.cores; first += options.cores_per_group) {
        const int last = std::min(first + options.cores_per_group, cpu_spec.cores) - 1;
        DeviceId id;
        id.kind = DeviceKind::kCpu;
        id.index = first;
        id.last_core = last;
        cluster.devices.push_back(
            ClusterDevice{id.to_string(), options.node, cpu_group_spec(cpu_spec, last - first + 1)});
      }
      break;
    }
  }
  return cluster;
}

void add_cuda_devices(Cluster& cluster, const std::vector<DeviceSpec>& gpus, const LinkSpec& host_link,
                      const std::optional<LinkSpec>& peer_link) {
  const std::string node = cluster.devices.empty() ? cluster.name : cluster.devices.front().node;
  int next = 0;
  for (const auto& d : cluster.devices) {
    if (d.id.starts_with("cuda:")) next = std::max(next, parse_device_id(d.id).index + 1);
  }
  for (const auto& spec : gpus) {
    PARTITA_CHECK(spec.kind != DeviceKind::kCpu, "add_cuda_devices: '", spec.name,
                  "' is a CPU; add CPUs with make_local_cluster");
    const std::string id = "cuda:" + std::to_string(next++);
    for (const auto& other : cluster.devices) {
      const bool peer = other.spec.kind != DeviceKind::kCpu;
      cluster.links.push_back(ClusterLink{other.id, id, peer ? peer_link.value_or(host_link) : host_link});
    }
    cluster.devices.push_back(ClusterDevice{id, node.empty() ? "localhost" : node, spec});
  }
}

}  // namespace partita

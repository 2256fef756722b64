#pragma once
// The cluster of this machine: its CPU (whole, or split into core groups) and, through a hook, its GPUs
// (found by LibTorch in torch_bridge, which this library must not include).
#include <optional>
#include <string>
#include <vector>

#include "partita/hardware/cpu_info.h"
#include "partita/hardware/device.h"

namespace partita {

// How the host CPU appears to the planner.
enum class CpuPartition {
  kWholeCpu,    // one device "cpu" with all physical cores
  kCoreGroups,  // devices "cpu:0", "cpu:1" (or "cpu:0-3", ...) of cores_per_group cores each
  kNone,        // no CPU device (plan on GPUs only)
};

struct LocalClusterOptions {
  CpuPartition cpu_partition = CpuPartition::kWholeCpu;
  int cores_per_group = 1;  // kCoreGroups; the last group takes what is left when cores do not divide evenly
  std::string node = "localhost";
  // Throws partita::Error when cores_per_group < 1 or node is empty.
  void validate() const;
};

// A cluster named `options.node` with the CPU devices described by `cpu_spec` (cpu_spec.cores physical
// cores), joined by shared_memory_link(cpu_spec) as the intra-node link. Pure, thread-safe.
Cluster make_local_cluster(const DeviceSpec& cpu_spec, const LocalClusterOptions& options);

// The hook for GPUs found elsewhere: appends "cuda:K" devices (K continuing after any cuda devices already
// there) on the cluster's node, with explicit links: `host_link` to every non-GPU device, and `peer_link`
// (NVLink) between GPUs, or `host_link` when there is none. Throws partita::Error when a spec is not a GPU
// (kind kCpu).
void add_cuda_devices(Cluster& cluster, const std::vector<DeviceSpec>& gpus, const LinkSpec& host_link,
                      const std::optional<LinkSpec>& peer_link = std::nullopt);

}  // namespace partita

#include "partita/search/process_layout.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

DeviceSpec cpu_spec(const std::string& name) {
  DeviceSpec s = make_spec(name, 1);
  s.kind = DeviceKind::kCpu;
  return s;
}

// Three CPUs and a GPU on node0 joined in-process by `intra`, one CPU on node1 (inter-node link `inter`),
// and an explicit PCIe link between c0 and g0.
Cluster mixed_cluster() {
  Cluster c;
  c.name = "mixed";
  for (const char* id : {"c0", "c1", "c2"}) c.devices.push_back(ClusterDevice{id, "node0", cpu_spec("cpu")});
  c.devices.push_back(ClusterDevice{"g0", "node0", make_spec("gpu", 10)});
  c.devices.push_back(ClusterDevice{"r0", "node1", cpu_spec("cpu")});
  c.intra_node_link = LinkSpec{"in-process", Seconds(1e-6), BytesPerSecond(10e9), "test"};
  c.inter_node_link = LinkSpec{"network", Seconds(50e-6), BytesPerSecond(1e9), "test"};
  c.links.push_back(ClusterLink{"c0", "g0", LinkSpec{"pcie", Seconds(5e-6), BytesPerSecond(20e9), "test"}});
  return c;
}

const LinkSpec kBetween{"between processes", Seconds(30e-6), BytesPerSecond(5e9), "test"};

Plan plan_of(std::vector<DeviceGroup> groups, std::vector<int> stage_groups) {
  Plan p;
  p.groups = std::move(groups);
  for (size_t s = 0; s < stage_groups.size(); ++s) {
    p.stages.push_back(Stage{static_cast<NodeId>(s), static_cast<NodeId>(s), stage_groups[s],
                             Checkpointing::kNone, Offload::kNone});
  }
  return p;
}

TEST(LaunchProcessOfDevices, OneStageRunsAProcessPerDeviceAndSeveralStagesAProcessPerStage) {
  const Plan data = plan_of({DeviceGroup{{"c0", "c1", "c2"}, {1, 1, 1}, GroupParallelism::kData}}, {0});
  EXPECT_EQ(launch_process_of_devices(data), (std::vector<int>{0, 1, 2}));
  // Stage 0 runs group 1 (two devices), stage 1 runs group 0: devices come in group order.
  const Plan hybrid = plan_of({DeviceGroup{{"c2"}, {2}, GroupParallelism::kData},
                               DeviceGroup{{"c0", "c1"}, {1, 1}, GroupParallelism::kData}},
                              {1, 0});
  EXPECT_EQ(hybrid.used_devices(), (std::vector<std::string>{"c2", "c0", "c1"}));
  EXPECT_EQ(launch_process_of_devices(hybrid), (std::vector<int>{1, 0, 0}));
}

TEST(ClusterAcrossProcesses, DevicesOfOneMachineInOtherProcessesCrossTheProcessLink) {
  const Cluster c = mixed_cluster();
  // Stage 0: c0 + c1 (one process), stage 1: g0, stage 2: c2, stage 3: r0 on the other machine.
  const Plan p = plan_of(
      {DeviceGroup{{"c0", "c1"}, {1, 1}, GroupParallelism::kData},
       DeviceGroup{{"g0"}, {2}, GroupParallelism::kData}, DeviceGroup{{"c2"}, {2}, GroupParallelism::kData},
       DeviceGroup{{"r0"}, {2}, GroupParallelism::kData}},
      {0, 1, 2, 3});
  const Cluster across = cluster_across_processes(c, p, kBetween);
  EXPECT_EQ(across.link_between("c0", "c1").name, "in-process");  // one stage, one process
  EXPECT_EQ(across.link_between("c0", "c2").name, "between processes");
  EXPECT_EQ(across.link_between("c2", "c1").name, "between processes");
  EXPECT_EQ(across.link_between("c2", "r0").name, "network");  // another machine: untouched
  // A GPU's data goes through the host first: its own link, then the process link.
  const LinkSpec gpu = across.link_between("c0", "g0");
  EXPECT_EQ(gpu.name, "pcie + between processes");
  EXPECT_NEAR(gpu.latency.value(), 35e-6, 1e-15);
  EXPECT_NEAR(gpu.bandwidth.value(), 1.0 / (1.0 / 20e9 + 1.0 / 5e9), 1e-3);
  EXPECT_EQ(across.link_between("c2", "g0").name, "in-process + between processes");
  // The input cluster is not changed.
  EXPECT_EQ(c.link_between("c0", "c2").name, "in-process");
}

// Before a layout exists (a strategy's estimates): every two devices of one machine apart.
TEST(ClusterOfSeparateProcesses, EveryTwoDevicesOfOneMachineCrossTheProcessLink) {
  const Cluster c = mixed_cluster();
  const Cluster apart = cluster_of_separate_processes(c, kBetween);
  EXPECT_EQ(apart.link_between("c0", "c1").name, "between processes");
  EXPECT_EQ(apart.link_between("c2", "c1").name, "between processes");
  EXPECT_EQ(apart.link_between("c0", "g0").name, "pcie + between processes");
  EXPECT_EQ(apart.link_between("c1", "g0").name, "in-process + between processes");
  EXPECT_EQ(apart.link_between("c0", "r0").name, "network");
  EXPECT_EQ(apart.devices.size(), c.devices.size());
  EXPECT_EQ(c.link_between("c0", "c1").name, "in-process");
}

TEST(ClusterAcrossProcesses, RefusesADeviceTheClusterLacks) {
  const Plan p = plan_of({DeviceGroup{{"c0", "x9"}, {1, 1}, GroupParallelism::kData}}, {0});
  try {
    (void)cluster_across_processes(mixed_cluster(), p, kBetween);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x9"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace partita

#include "partita/hardware/cpu_spec.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "partita/hardware/local_cluster.h"

namespace partita {
namespace {

const std::string kData = PARTITA_SOURCE_DIR "/libs/hardware/tests/data/";

DeviceSpec eight_core_cpu() {
  DeviceSpec cpu;
  cpu.name = "cpu8";
  cpu.kind = DeviceKind::kCpu;
  cpu.cores = 8;
  cpu.peak_flops[DType::kFloat32] = FlopsPerSecond(800e9);
  cpu.memory_bandwidth = BytesPerSecond(100e9);
  cpu.memory = Bytes(64LL << 30);
  cpu.tdp = Watts(160);
  cpu.idle_power = Watts(40);
  cpu.op_overhead = Seconds(5e-6);
  return cpu;
}

TEST(CpuGroupSpec, ScalesFlopsLinearlyBandwidthSublinearly) {
  const DeviceSpec g = cpu_group_spec(eight_core_cpu(), 2);
  EXPECT_EQ(g.cores, 2);
  EXPECT_DOUBLE_EQ(g.flops_for(DType::kFloat32).value(), 200e9);  // 800 x 2/8
  EXPECT_DOUBLE_EQ(g.memory_bandwidth.value(), 50e9);             // 100 x min(1, 2 x 2/8)
  EXPECT_DOUBLE_EQ(g.tdp.value(), 40.0);
  EXPECT_DOUBLE_EQ(g.idle_power.value(), 10.0);
  EXPECT_EQ(g.memory.value(), 64LL << 30);
  EXPECT_DOUBLE_EQ(g.op_overhead.value(), 5e-6);
  EXPECT_EQ(g.name, "cpu8 (2 of 8 cores)");
  EXPECT_DOUBLE_EQ(cpu_group_spec(eight_core_cpu(), 6).memory_bandwidth.value(), 100e9);  // capped
  EXPECT_THROW(cpu_group_spec(eight_core_cpu(), 0), Error);
  EXPECT_THROW(cpu_group_spec(eight_core_cpu(), 9), Error);
}

TEST(CpuDeviceSpec, EstimatedFromFakeXeonWithoutDb) {
  const DeviceSpec s = cpu_device_spec(discover_cpu(kData + "fake_root_xeon"));
  EXPECT_EQ(s.kind, DeviceKind::kCpu);
  EXPECT_EQ(s.cores, 4);
  // 4 cores x 3.8 GHz x 16 lanes x 2 (FMA) x 2 units = 972.8 GFLOP/s.
  EXPECT_DOUBLE_EQ(s.flops_for(DType::kFloat32).value(), 972.8e9);
  EXPECT_DOUBLE_EQ(s.flops_for(DType::kFloat64).value(), 486.4e9);
  // AMX: 4 x 3.8 GHz x 1024.
  EXPECT_DOUBLE_EQ(s.flops_for(DType::kBFloat16).value(), 4 * 3.8e9 * 1024);
  EXPECT_DOUBLE_EQ(s.memory_bandwidth.value(), 32e9);
  EXPECT_EQ(s.memory.value(), 16384000LL * 1024);
  EXPECT_DOUBLE_EQ(s.tdp.value(), 40.0);
  EXPECT_NE(s.source.find("estimated"), std::string::npos);
}

TEST(CpuDeviceSpec, MatchedProfileScaledToVisibleCores) {
  HardwareDb db;
  DeviceSpec xeon = eight_core_cpu();
  xeon.name = "Xeon(R) Platinum 8480+";
  db.devices.push_back(xeon);
  const DeviceSpec s = cpu_device_spec(discover_cpu(kData + "fake_root_xeon"), &db);
  EXPECT_EQ(s.cores, 4);                                          // the VM sees 4 of the profile's 8
  EXPECT_DOUBLE_EQ(s.flops_for(DType::kFloat32).value(), 400e9);  // 800 x 4/8
  EXPECT_EQ(s.memory.value(), 16384000LL * 1024);                 // discovered, not the profile's
}

TEST(LocalCluster, WholeCpuAndCoreGroups) {
  const DeviceSpec cpu = eight_core_cpu();
  const Cluster whole = make_local_cluster(cpu, {});
  ASSERT_EQ(whole.devices.size(), 1u);
  EXPECT_EQ(whole.devices[0].id, "cpu");

  LocalClusterOptions options;
  options.cpu_partition = CpuPartition::kCoreGroups;
  options.cores_per_group = 3;
  const Cluster groups = make_local_cluster(cpu, options);
  ASSERT_EQ(groups.devices.size(), 3u);
  EXPECT_EQ(groups.devices[0].id, "cpu:0-2");
  EXPECT_EQ(groups.devices[2].id, "cpu:6-7");
  EXPECT_EQ(groups.devices[2].spec.cores, 2);
  const LinkSpec link = groups.link_between("cpu:0-2", "cpu:6-7");
  EXPECT_DOUBLE_EQ(link.bandwidth.value(), 50e9);  // memory copy: 100 GB/s / 2
  EXPECT_DOUBLE_EQ(link.latency.value(), 1e-6);
  options.cores_per_group = 0;
  EXPECT_THROW(make_local_cluster(cpu, options), Error);
}

TEST(LocalCluster, AddCudaDevicesHook) {
  LocalClusterOptions options;
  options.cpu_partition = CpuPartition::kCoreGroups;
  options.cores_per_group = 4;
  Cluster c = make_local_cluster(eight_core_cpu(), options);
  DeviceSpec gpu;
  gpu.name = "H200";
  const LinkSpec pcie{"PCIe 5.0 x16", Seconds(5e-6), BytesPerSecond(63e9), ""};
  const LinkSpec nvlink{"NVLink 4", Seconds(2e-6), BytesPerSecond(450e9), ""};
  add_cuda_devices(c, {gpu, gpu}, pcie, nvlink);
  ASSERT_EQ(c.devices.size(), 4u);
  EXPECT_EQ(c.devices[2].id, "cuda:0");
  EXPECT_EQ(c.devices[3].id, "cuda:1");
  EXPECT_EQ(c.devices[3].node, "localhost");
  EXPECT_EQ(c.link_between("cuda:0", "cpu:4-7").name, "PCIe 5.0 x16");
  EXPECT_EQ(c.link_between("cuda:1", "cuda:0").name, "NVLink 4");
  add_cuda_devices(c, {gpu}, pcie);
  EXPECT_EQ(c.devices.back().id, "cuda:2");
  EXPECT_EQ(c.link_between("cuda:2", "cuda:0").name, "PCIe 5.0 x16");
  EXPECT_THROW(add_cuda_devices(c, {eight_core_cpu()}, pcie), Error);
}

}  // namespace
}  // namespace partita

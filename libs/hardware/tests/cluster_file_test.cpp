#include "partita/hardware/cluster_file.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

const std::string kData = PARTITA_SOURCE_DIR "/libs/hardware/tests/data/";
const std::string kConfig = PARTITA_SOURCE_DIR "/config/";

const HardwareDb& db() {
  static const HardwareDb instance = load_hardware_db(kConfig + "hardware_profiles.yaml");
  return instance;
}

std::string load_error(const std::string& path) {
  try {
    load_cluster(path, db());
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ClusterFile, EveryShippedClusterLoadsAndIsConnected) {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kConfig + "clusters")) {
    if (entry.path().extension() != ".yaml") continue;
    ++files;
    const Cluster c = load_cluster(entry.path().string(), db());
    EXPECT_FALSE(c.devices.empty()) << entry.path();
    EXPECT_NO_THROW(check_cluster_connected(c)) << entry.path();
  }
  EXPECT_GE(files, 5);
}

TEST(ClusterFile, TwoNodesOfEightH100) {
  const Cluster c = load_cluster(kConfig + "clusters/2x8xh100-nvlink-ib.yaml", db());
  ASSERT_EQ(c.devices.size(), 16u);
  EXPECT_EQ(c.devices[0].id, "node0/gpu0");
  EXPECT_EQ(c.devices[15].id, "node1/gpu7");
  EXPECT_EQ(c.devices[15].node, "node1");
  EXPECT_EQ(c.devices[3].spec.name, "H100 SXM");
  EXPECT_EQ(c.link_between("node0/gpu0", "node0/gpu7").name, "NVLink 4");
  EXPECT_DOUBLE_EQ(c.link_between("node0/gpu0", "node1/gpu0").bandwidth.value(), 50e9);
}

TEST(ClusterFile, MixedPcieClusterHasExplicitLinks) {
  const Cluster c = load_cluster(kConfig + "clusters/4xa100-4xv100-pcie.yaml", db());
  ASSERT_EQ(c.devices.size(), 8u);
  EXPECT_EQ(c.link_between("node0/a100-0", "node0/a100-3").name, "PCIe 4.0 x16");
  EXPECT_EQ(c.link_between("node0/v100-3", "node0/v100-1").name, "PCIe 3.0 x16");
  EXPECT_EQ(c.link_between("node0/a100-0", "node0/v100-0").name, "PCIe 4.0 x16");
}

TEST(ClusterFile, LocalTwoCoreIsTwoOneCoreDevices) {
  const Cluster c = load_cluster(kConfig + "clusters/local-2core.yaml", db());
  ASSERT_EQ(c.devices.size(), 2u);
  EXPECT_EQ(c.devices[0].id, "cpu:0");
  EXPECT_EQ(c.devices[1].id, "cpu:1");
  EXPECT_EQ(c.devices[1].spec.cores, 1);
  EXPECT_EQ(c.devices[1].spec.kind, DeviceKind::kCpu);
  // Half of the 2-core profile's 333 GFLOP/s; bandwidth min(1, 2 x 1/2) = all of 20 GB/s.
  EXPECT_DOUBLE_EQ(c.devices[0].spec.flops_for(DType::kFloat32).value(), 166.5e9);
  EXPECT_DOUBLE_EQ(c.devices[0].spec.memory_bandwidth.value(), 20e9);
  EXPECT_EQ(c.link_between("cpu:0", "cpu:1").name, "Host shared memory");
}

TEST(ClusterFile, WorkstationAndMixedSpeeds) {
  const Cluster ws = load_cluster(kConfig + "clusters/workstation-4090.yaml", db());
  ASSERT_EQ(ws.devices.size(), 2u);
  EXPECT_EQ(ws.devices[1].spec.cores, 32);
  EXPECT_EQ(ws.link_between("cuda:0", "cpu").name, "PCIe 4.0 x16");
  const Cluster mixed = load_cluster(kConfig + "clusters/2xa100-2xv100-mixed.yaml", db());
  EXPECT_EQ(mixed.link_between("cuda:1", "cuda:0").name, "NVLink 3");
  EXPECT_EQ(mixed.link_between("cuda:1", "cuda:2").name, "PCIe 4.0 x16");
}

TEST(ClusterFile, UnknownProfileListsCloseMatches) {
  const std::string path = kData + "cluster_unknown_profile.yaml";
  EXPECT_EQ(load_error(path), path +
                                  ":4: device entry 1: field 'profile' names unknown device profile 'A100'; "
                                  "did you mean 'A100 40GB' or 'A100 80GB'?");
}

TEST(ClusterFile, UnreachableDevicesAreRejected) {
  const std::string msg = load_error(kData + "cluster_unreachable.yaml");
  EXPECT_NE(msg.find("no link between 'node0/gpu0' and 'node1/gpu0'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("inter_node"), std::string::npos) << msg;
}

TEST(ClusterFile, LinkToUnknownDevice) {
  const std::string msg = load_error(kData + "cluster_bad_link.yaml");
  EXPECT_NE(
      msg.find("cluster_bad_link.yaml:6: link entry 1: field 'between' names unknown device 'node0/gpu9'"),
      std::string::npos)
      << msg;
}

TEST(ClusterFile, BadCount) {
  const std::string msg = load_error(kData + "cluster_bad_count.yaml");
  EXPECT_NE(msg.find("cluster_bad_count.yaml:5: device entry 1: field 'count' must be a whole number up to "
                     "2147483647, not 'two'"),
            std::string::npos)
      << msg;
}

TEST(ClusterFile, LinksBetweenProcessesAreDatabaseLinks) {
  const Cluster none = parse_cluster("name: x\ndevices:\n  - {profile: T4}\n", "inline", db());
  EXPECT_FALSE(none.process_link);
  EXPECT_FALSE(none.process_collective_link);
  const Cluster both = parse_cluster(
      "name: x\nprocess_link: loopback TCP\nprocess_collective_link: Host shared memory\n"
      "devices:\n  - {profile: T4}\n",
      "inline", db());
  ASSERT_TRUE(both.process_link && both.process_collective_link);
  EXPECT_EQ(both.process_link->name, "loopback TCP");
  EXPECT_NEAR(both.process_link->latency.value(), db().link("loopback TCP").latency.value(), 1e-15);
  EXPECT_EQ(both.process_collective_link->name, "Host shared memory");
  try {
    parse_cluster("name: x\nprocess_link: loopback TPC\ndevices:\n  - {profile: T4}\n", "inline", db());
    FAIL() << "an unknown link was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("process_link"), std::string::npos) << m;
    EXPECT_NE(m.find("loopback TCP"), std::string::npos) << "the close match: " << m;
  }
}

TEST(ClusterFile, InlineErrors) {
  EXPECT_THROW(parse_cluster("name: x\n", "inline", db()), Error);  // no devices
  EXPECT_THROW(parse_cluster("name: x\ndevices:\n  - {profile: T4, ids: [a, a], count: 2}\n", "inline", db()),
               Error);
  EXPECT_THROW(parse_cluster("name: x\ndevices:\n  - {profile: T4, cores: 2}\n", "inline", db()), Error);
  const Cluster one = parse_cluster("name: x\ndevices:\n  - {profile: T4}\n", "inline", db());
  EXPECT_EQ(one.devices.at(0).id, "node0/gpu0");
}

}  // namespace
}  // namespace partita

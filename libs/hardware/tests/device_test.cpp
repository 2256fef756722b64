#include "partita/hardware/device.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

TEST(ParseDeviceId, WholeCpu) {
  const DeviceId id = parse_device_id("cpu");
  EXPECT_EQ(id.kind, DeviceKind::kCpu);
  EXPECT_EQ(id.index, -1);
  EXPECT_EQ(id.cpu_cores(), -1);
  EXPECT_EQ(id.to_string(), "cpu");
}

TEST(ParseDeviceId, SingleCoreAndRange) {
  const DeviceId one = parse_device_id("cpu:0");
  EXPECT_EQ(one.index, 0);
  EXPECT_EQ(one.last_core, 0);
  EXPECT_EQ(one.cpu_cores(), 1);
  EXPECT_EQ(one.to_string(), "cpu:0");
  const DeviceId range = parse_device_id("cpu:2-3");
  EXPECT_EQ(range.index, 2);
  EXPECT_EQ(range.last_core, 3);
  EXPECT_EQ(range.cpu_cores(), 2);
  EXPECT_EQ(range.to_string(), "cpu:2-3");
}

TEST(ParseDeviceId, Cuda) {
  const DeviceId id = parse_device_id("cuda:1");
  EXPECT_EQ(id.kind, DeviceKind::kCuda);
  EXPECT_EQ(id.index, 1);
  EXPECT_EQ(id.to_string(), "cuda:1");
  EXPECT_LT(parse_device_id("cuda:0"), parse_device_id("cuda:1"));
}

TEST(ParseDeviceId, ErrorsSayWhatToWrite) {
  for (const char* bad :
       {"gpu0", "", "cpu:", "cpu:a", "cpu:-1", "cpu:1-", "cuda", "cuda:x", "cuda:-2", "cpu:0:1", "CPU"}) {
    try {
      parse_device_id(bad);
      FAIL() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos) << e.what();
    }
  }
  try {
    parse_device_id("gpu0");
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "bad device id 'gpu0': use cpu, cpu:N, cpu:A-B or cuda:N");
  }
  try {
    parse_device_id("cpu:3-2");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cpu:2-3"), std::string::npos) << e.what();
  }
}

TEST(DeviceSpec, FlopsForFallsBackToF32) {
  DeviceSpec spec;
  EXPECT_EQ(spec.flops_for(DType::kFloat32).value(), 0.0);
  spec.peak_flops[DType::kFloat32] = FlopsPerSecond(19.5e12);
  spec.peak_flops[DType::kBFloat16] = FlopsPerSecond(312e12);
  EXPECT_EQ(spec.flops_for(DType::kBFloat16).value(), 312e12);
  EXPECT_EQ(spec.flops_for(DType::kFloat16).value(), 19.5e12);
}

Cluster two_nodes() {
  Cluster c;
  c.name = "test";
  c.devices = {{"n0/gpu0", "n0", {}}, {"n0/gpu1", "n0", {}}, {"n1/gpu0", "n1", {}}};
  c.intra_node_link = LinkSpec{"NVLink 4", Seconds(2e-6), BytesPerSecond(450e9), ""};
  c.inter_node_link = LinkSpec{"InfiniBand NDR", Seconds(2e-6), BytesPerSecond(50e9), ""};
  return c;
}

TEST(Cluster, IndexOf) {
  const Cluster c = two_nodes();
  EXPECT_EQ(c.index_of("n0/gpu1"), 1);
  EXPECT_EQ(c.index_of("n1/gpu0"), 2);
  EXPECT_EQ(c.index_of("cuda:0"), -1);
}

TEST(Cluster, LinkBetweenUsesExplicitThenNodeDefaults) {
  Cluster c = two_nodes();
  EXPECT_EQ(c.link_between("n0/gpu0", "n0/gpu1").name, "NVLink 4");
  EXPECT_EQ(c.link_between("n0/gpu1", "n1/gpu0").name, "InfiniBand NDR");
  c.links.push_back({"n1/gpu0", "n0/gpu0", LinkSpec{"special", Seconds(1e-6), BytesPerSecond(1e9), ""}});
  EXPECT_EQ(c.link_between("n0/gpu0", "n1/gpu0").name, "special");  // symmetric
  EXPECT_EQ(c.link_between("n0/gpu1", "n1/gpu0").name, "InfiniBand NDR");
}

TEST(Cluster, LinkBetweenErrors) {
  Cluster c = two_nodes();
  EXPECT_THROW(c.link_between("n0/gpu0", "n0/gpu0"), Error);
  EXPECT_THROW(c.link_between("n0/gpu0", "nope"), Error);
  c.inter_node_link.reset();
  try {
    c.link_between("n0/gpu0", "n1/gpu0");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inter_node"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace partita

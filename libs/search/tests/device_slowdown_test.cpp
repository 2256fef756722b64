#include "partita/search/device_slowdown.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "partita/search/planner.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

struct TwoDevices {
  Graph graph;
  Cluster cluster;
  CostTable table;
};

// 12 equal layers on two identical devices with free links.
TwoDevices two_devices() {
  TwoDevices s{
      chain_graph(std::vector<double>(12, 1e9), std::vector<int64_t>(12, 64), std::vector<int64_t>(12, 256)),
      make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1e21, 0)),
      {}};
  s.table = table_for(s.graph, s.cluster);
  return s;
}

int layers_on(const Plan& plan, const std::string& device) {
  int n = 0;
  for (const Stage& st : plan.stages) {
    if (plan.groups[st.group].devices[0] == device) n += st.last - st.first + 1;
  }
  return n;
}

TEST(DeviceSlowdown, GivesTheDeviceItsOwnScaledRow) {
  TwoDevices s = two_devices();
  slow_down_device(s.cluster, s.table, "d0", 2.0);
  ASSERT_EQ(s.table.spec_names.size(), 2u);
  EXPECT_EQ(s.cluster.devices[0].spec.name, "gpu (x2 slower)");
  EXPECT_EQ(s.cluster.devices[1].spec.name, "gpu");
  EXPECT_EQ(s.table.spec_names[1], "gpu (x2 slower)");
  for (size_t n = 0; n < s.table.times[0].size(); ++n) {
    EXPECT_DOUBLE_EQ(s.table.times[1][n].forward.value(), 2 * s.table.times[0][n].forward.value());
    EXPECT_DOUBLE_EQ(s.table.times[1][n].backward.value(), 2 * s.table.times[0][n].backward.value());
  }
  EXPECT_DOUBLE_EQ(s.cluster.devices[0].spec.flops_for(DType::kFloat32).value(), 0.5e12);
}

TEST(DeviceSlowdown, MovesWorkToTheOtherDevice) {
  TwoDevices s = two_devices();
  SearchOptions options;
  options.mode = Mode::kTraining;
  options.global_batch = 8;
  options.graph_batch = 1;
  options.microbatches = 4;
  options.strategy = StrategyKind::kPipeline;
  const PlanOutcome even = make_plan(s.graph, s.cluster, s.table, options);
  ASSERT_TRUE(even.plan) << even.error;
  EXPECT_EQ(layers_on(*even.plan, "d0"), 6);
  slow_down_device(s.cluster, s.table, "d0", 2.0);
  const PlanOutcome slowed = make_plan(s.graph, s.cluster, s.table, options);
  ASSERT_TRUE(slowed.plan) << slowed.error;
  EXPECT_EQ(layers_on(*slowed.plan, "d0"), 4);  // 4 layers x2 = 8 units beside 8 layers x1
  EXPECT_EQ(layers_on(*slowed.plan, "d1"), 8);
}

TEST(DeviceSlowdown, RefusesUnknownDevicesAndBadFactors) {
  TwoDevices s = two_devices();
  EXPECT_THROW(slow_down_device(s.cluster, s.table, "d7", 2.0), Error);
  EXPECT_THROW(slow_down_device(s.cluster, s.table, "d0", 0.0), Error);
  EXPECT_THROW(slow_down_device(s.cluster, s.table, "d0", -1.0), Error);
  slow_down_device(s.cluster, s.table, "d0", 1.0);
  EXPECT_EQ(s.table.spec_names.size(), 1u);
}

TEST(DeviceSlowdown, ParsesDeviceAndFactor) {
  EXPECT_EQ(parse_device_slowdown("cpu:0:2.5"), std::make_pair(std::string("cpu:0"), 2.5));
  EXPECT_EQ(parse_device_slowdown("node1/gpu3:3"), std::make_pair(std::string("node1/gpu3"), 3.0));
  EXPECT_THROW(parse_device_slowdown("cpu0"), Error);
  EXPECT_THROW(parse_device_slowdown("cpu:0:fast"), Error);
  EXPECT_THROW(parse_device_slowdown("cpu:0:-2"), Error);
  EXPECT_THROW(parse_device_slowdown("cpu:0:"), Error);
}

}  // namespace
}  // namespace partita

#include "partita/search/device_slowdown.h"

#include <gtest/gtest.h>

#include <cmath>

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

// The cube-law model: a 400 W GPU idling at 100 W, capped at 250 W, keeps (150 / 300)^(1/3) of its clock.
TEST(DevicePowerCap, ClockFollowsTheCubeOfTheDynamicPower) {
  const DeviceSpec gpu = make_spec("gpu", 1, 80, 400, 100);
  const PowerCapEffect capped = power_cap_effect(gpu, Watts(250));
  EXPECT_NEAR(capped.clock_ratio, std::cbrt(0.5), 1e-12);
  EXPECT_EQ(capped.busy_power.value(), 250);
  const PowerCapEffect above = power_cap_effect(gpu, Watts(500));  // above TDP: nothing changes
  EXPECT_EQ(above.clock_ratio, 1.0);
  EXPECT_EQ(above.busy_power.value(), 400);
  EXPECT_EQ(power_cap_effect(gpu, Watts(400)).clock_ratio, 1.0);
  EXPECT_THROW(power_cap_effect(gpu, Watts(100)), Error);  // not above idle
  DeviceSpec unknown = gpu;
  unknown.tdp = Watts(0);
  EXPECT_THROW(power_cap_effect(unknown, Watts(250)), Error);
}

TEST(DevicePowerCap, StretchesTheDevicesRowAndChargesTheCapWhileBusy) {
  // One GPU, one-device data plan: every second of the step is busy, so the step takes 1 / clock_ratio as
  // long and draws the cap instead of TDP.
  TwoDevices s = two_devices();
  Cluster one = s.cluster;
  one.devices.resize(1);
  SearchOptions options;
  options.mode = Mode::kTraining;
  options.global_batch = 8;
  options.graph_batch = 1;
  options.strategy = StrategyKind::kData;
  const PlanOutcome before = make_plan(s.graph, one, s.table, options);
  ASSERT_TRUE(before.plan) << before.error;
  CostTable table = s.table;
  cap_device_power(one, table, "d0", Watts(250));
  EXPECT_EQ(one.devices[0].spec.name, "gpu (capped at 250 W)");
  EXPECT_EQ(one.devices[0].spec.tdp.value(), 250);
  const double ratio = std::cbrt(0.5);
  EXPECT_NEAR(one.devices[0].spec.flops_for(DType::kFloat32).value(), 1e12 * ratio, 1e3);
  const PlanOutcome after = make_plan(s.graph, one, table, options);
  ASSERT_TRUE(after.plan) << after.error;
  const double t0 = before.plan->prediction.step_time.value(), t1 = after.plan->prediction.step_time.value();
  EXPECT_NEAR(t1 / t0, 1 / ratio, 1e-6);
  const double busy0 = before.plan->prediction.devices[0].busy.value();
  const double busy1 = after.plan->prediction.devices[0].busy.value();
  EXPECT_NEAR(busy1 / busy0, 1 / ratio, 1e-6);
  // Energy: cap x busy + idle x the rest of the step.
  EXPECT_NEAR(after.plan->prediction.devices[0].energy.value(), 250 * busy1 + 100 * (t1 - busy1),
              1e-9 * 250 * t1);
  EXPECT_LT(after.plan->prediction.energy.value(), before.plan->prediction.energy.value());
}

TEST(DevicePowerCap, RefusesCpusUnknownDevicesAndBadText) {
  TwoDevices s = two_devices();
  s.cluster.devices[1].spec.kind = DeviceKind::kCpu;
  EXPECT_THROW(cap_device_power(s.cluster, s.table, "d1", Watts(200)), Error);
  EXPECT_THROW(cap_device_power(s.cluster, s.table, "d7", Watts(200)), Error);
  EXPECT_THROW(cap_device_power(s.cluster, s.table, "d0", Watts(50)), Error);
  EXPECT_EQ(s.table.spec_names.size(), 1u) << "a refused cap leaves the table alone";
  cap_device_power(s.cluster, s.table, "d0", Watts(400));  // at TDP: no change
  EXPECT_EQ(s.table.spec_names.size(), 1u);
  EXPECT_EQ(parse_device_power_cap("cuda:0:250"), std::make_pair(std::string("cuda:0"), 250.0));
  EXPECT_EQ(parse_device_power_cap("node1/gpu3:300W"), std::make_pair(std::string("node1/gpu3"), 300.0));
  EXPECT_THROW(parse_device_power_cap("cuda:0"), Error);
  EXPECT_THROW(parse_device_power_cap("cuda:0:lots"), Error);
  EXPECT_THROW(parse_device_power_cap("cuda:0:-5"), Error);
}

}  // namespace
}  // namespace partita

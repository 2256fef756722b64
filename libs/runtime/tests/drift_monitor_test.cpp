#include "partita/runtime/drift_monitor.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

std::vector<Seconds> ms(std::initializer_list<double> values) {
  std::vector<Seconds> out;
  for (double v : values) out.push_back(Seconds(v * 1e-3));
  return out;
}

DriftOptions options() {
  DriftOptions o;
  o.reference_steps = 2;
  o.threshold = 1.3;
  o.patience = 3;
  return o;
}

TEST(DriftMonitor, IgnoresAConstantModelErrorAndUniformSlowdowns) {
  // The plan said 10 / 10 ms; the devices really take 14 / 8 ms, steadily, then both slow down 2x.
  DriftMonitor m({"cpu:0", "cpu:1"}, ms({10, 10}), options());
  for (int step = 0; step < 10; ++step) EXPECT_FALSE(m.observe(ms({14, 8})));
  for (int step = 0; step < 10; ++step) EXPECT_FALSE(m.observe(ms({28, 16})));
}

TEST(DriftMonitor, ReportsOneDeviceSlowedAfterPatienceSteps) {
  DriftMonitor m({"cpu:0", "cpu:1"}, ms({10, 10}), options());
  EXPECT_FALSE(m.observe(ms({12, 9})));
  EXPECT_FALSE(m.observe(ms({12, 9})));  // reference learned: 1.2 and 0.9
  EXPECT_FALSE(m.observe(ms({24, 9})));  // 1 of 3
  EXPECT_FALSE(m.observe(ms({12, 9})));  // a normal step resets the streak
  EXPECT_FALSE(m.observe(ms({24, 9})));
  EXPECT_FALSE(m.observe(ms({25.2, 9})));
  const auto report = m.observe(ms({24, 9.45}));  // third in a row: cpu:0 2, 2.1, 1.905x relative
  ASSERT_TRUE(report);
  ASSERT_EQ(report->slowdown.size(), 2u);
  EXPECT_NEAR(report->slowdown[0], 2.0, 1e-9);  // median of 2.0, 2.1, 2.0/1.05
  EXPECT_NEAR(report->slowdown[1], 1.0, 1e-9);
  EXPECT_NE(report->summary.find("cpu:0 2.00x slower"), std::string::npos) << report->summary;
  // It starts over: a new reference is learned before anything is reported again.
  EXPECT_FALSE(m.has_reference());
  for (int step = 0; step < 6; ++step) EXPECT_FALSE(m.observe(ms({24, 9})));
}

TEST(DriftMonitor, BelowTheThresholdIsNoDrift) {
  DriftMonitor m({"a", "b", "c"}, ms({10, 10, 10}), options());
  m.observe(ms({10, 10, 10}));
  m.observe(ms({10, 10, 10}));
  for (int step = 0; step < 10; ++step) EXPECT_FALSE(m.observe(ms({12.5, 10, 10})));
}

TEST(DriftMonitor, RefusesBadInput) {
  EXPECT_THROW(DriftMonitor({"a"}, ms({10, 10})), Error);
  EXPECT_THROW(DriftMonitor({"a"}, ms({0})), Error);
  DriftOptions bad = options();
  bad.threshold = 1.0;
  EXPECT_THROW(DriftMonitor({"a"}, ms({1}), bad), Error);
  DriftMonitor m({"a", "b"}, ms({1, 1}), options());
  EXPECT_THROW(m.observe(ms({1})), Error);
}

}  // namespace
}  // namespace partita

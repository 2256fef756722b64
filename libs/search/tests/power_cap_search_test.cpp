#include "partita/search/power_cap_search.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "partita/core/error.h"
#include "partita/search/objective.h"
#include "partita/search/simulator.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

struct CapCase {
  Graph graph;
  Cluster cluster;
  CostTable table;
};

// 12 equal layers on the given GPUs (400 W TDP, 100 W idle unless the spec says otherwise), a fast link.
CapCase cap_case(const std::vector<DeviceSpec>& specs) {
  CapCase s{
      chain_graph(std::vector<double>(12, 1e10), std::vector<int64_t>(12, 64), std::vector<int64_t>(12, 256)),
      make_cluster(specs, make_link(100, 1)),
      {}};
  s.table = table_for(s.graph, s.cluster);
  return s;
}

SearchOptions with(Objective objective) {
  SearchOptions o;
  o.mode = Mode::kTraining;
  o.global_batch = 8;
  o.objective = objective;
  return o;
}

// The chosen plan's prediction is what the simulator says on the capped cluster and table returned (what
// `partita simulate` rebuilds from the recorded caps).
void expect_consistent(const CappedPlanOutcome& r, const CapCase& s, const SearchOptions& o) {
  ASSERT_TRUE(r.outcome.plan) << r.outcome.error;
  const Simulation again = simulate(*r.outcome.plan, s.graph, r.cluster, r.table, o);
  EXPECT_NEAR(again.prediction.step_time.value(), r.outcome.plan->prediction.step_time.value(), 1e-12);
  EXPECT_NEAR(again.prediction.energy.value(), r.outcome.plan->prediction.energy.value(), 1e-9);
}

TEST(PowerCapSearch, EnergyTakesTheSettingWithTheLeastEnergy) {
  const CapCase s = cap_case({make_spec("a", 10), make_spec("a", 10)});
  const SearchOptions o = with(Objective::kEnergy);
  const CappedPlanOutcome r = plan_with_power_caps(s.graph, s.cluster, s.table, o);
  ASSERT_EQ(r.settings.size(), 6u);  // one kind at 1.0 .. 0.5 TDP
  EXPECT_TRUE(r.settings.front().caps_w.empty()) << "the uncapped setting comes first";
  Joules least(1e30);
  for (const CapSetting& c : r.settings) {
    ASSERT_TRUE(c.feasible);
    least = std::min(least, c.energy);
  }
  expect_consistent(r, s, o);
  EXPECT_DOUBLE_EQ(r.outcome.plan->prediction.energy.value(), least.value());
  // Under the cube law with idle at a quarter of TDP, energy falls down to ~0.375 TDP: the lowest cap tried.
  ASSERT_FALSE(r.caps_w.empty());
  for (const auto& [id, watts] : r.caps_w) EXPECT_EQ(watts, 200.0) << id;
  EXPECT_LT(r.outcome.plan->prediction.energy, r.settings.front().energy);
  EXPECT_GT(r.outcome.plan->prediction.step_time, r.settings.front().step_time);
  // Only devices the plan uses are recorded.
  for (const auto& [id, watts] : r.caps_w) {
    const auto used = r.outcome.plan->used_devices();
    EXPECT_NE(std::find(used.begin(), used.end(), id), used.end()) << id;
  }
}

TEST(PowerCapSearch, BalancedStaysWithinTheSlackOfTheFastestSetting) {
  const CapCase s = cap_case({make_spec("a", 10), make_spec("a", 10)});
  const SearchOptions o = with(Objective::kBalanced);
  const CappedPlanOutcome r = plan_with_power_caps(s.graph, s.cluster, s.table, o);
  expect_consistent(r, s, o);
  Seconds fastest(1e30);
  for (const CapSetting& c : r.settings) fastest = std::min(fastest, c.step_time);
  const Plan& p = *r.outcome.plan;
  EXPECT_LE(p.prediction.step_time.value(), fastest.value() * (1 + kBalancedSlack) + 1e-15);
  for (const CapSetting& c : r.settings) {
    if (c.step_time.value() <= fastest.value() * (1 + kBalancedSlack)) {
      EXPECT_LE(p.prediction.energy, c.energy);
    }
  }
  // A cap that costs under 5% of the step: 0.9 TDP (clock x0.956); 0.8 TDP (x0.904) is too slow.
  ASSERT_FALSE(r.caps_w.empty());
  for (const auto& [id, watts] : r.caps_w) EXPECT_EQ(watts, 360.0) << id;
}

TEST(PowerCapSearch, KindsCombineUpToALimitThenShareOneFraction) {
  const CapCase two = cap_case({make_spec("a", 10), make_spec("b", 5)});
  const CappedPlanOutcome r2 =
      plan_with_power_caps(two.graph, two.cluster, two.table, with(Objective::kEnergy));
  EXPECT_EQ(r2.settings.size(), 36u);  // 6 x 6
  expect_consistent(r2, two, with(Objective::kEnergy));
  const CapCase three = cap_case({make_spec("a", 10), make_spec("b", 5), make_spec("c", 7)});
  const CappedPlanOutcome r3 =
      plan_with_power_caps(three.graph, three.cluster, three.table, with(Objective::kEnergy));
  EXPECT_EQ(r3.settings.size(), 6u);  // 216 > kMaxCapCombinations: one fraction for every GPU
  for (const CapSetting& c : r3.settings) {
    EXPECT_TRUE(c.caps_w.empty() || c.caps_w.size() == 3u);
  }
}

TEST(PowerCapSearch, SkipsCapsNotAboveIdlePower) {
  // Idle at 250 W of 400: 0.6 TDP (240 W) and 0.5 TDP (200 W) cannot be modelled and are not tried.
  const CapCase s = cap_case({make_spec("a", 10, 80, 400, 250)});
  const CappedPlanOutcome r = plan_with_power_caps(s.graph, s.cluster, s.table, with(Objective::kEnergy));
  EXPECT_EQ(r.settings.size(), 4u);
  for (const CapSetting& c : r.settings) {
    for (const auto& [id, watts] : c.caps_w) EXPECT_GT(watts, 250.0);
  }
}

TEST(PowerCapSearch, RefusesWhatItCannotDo) {
  const CapCase s = cap_case({make_spec("a", 10)});
  EXPECT_THROW(plan_with_power_caps(s.graph, s.cluster, s.table, with(Objective::kTime)), Error);
  PowerCapSearch bad;
  bad.tdp_fractions = {1.0, 1.2};
  EXPECT_THROW(plan_with_power_caps(s.graph, s.cluster, s.table, with(Objective::kEnergy), bad), Error);
  const Cluster cpus = uniform_cluster(2, DeviceKind::kCpu);
  EXPECT_THROW(plan_with_power_caps(s.graph, cpus, table_for(s.graph, cpus), with(Objective::kEnergy)),
               Error);
  const CapCase unknown = cap_case({make_spec("a", 10, 80, 0, 0)});  // no TDP to model a cap with
  EXPECT_THROW(plan_with_power_caps(unknown.graph, unknown.cluster, unknown.table, with(Objective::kEnergy)),
               Error);
}

}  // namespace
}  // namespace partita

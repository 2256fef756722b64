#include "partita/search/plan_json.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

Plan sample_plan() {
  Plan p;
  p.graph = GraphIdentity{10, "0123456789abcdef"};
  p.mode = Mode::kTraining;
  p.strategy = StrategyKind::kHybrid;
  p.schedule = Schedule::kGPipe;
  p.optimizer = Optimizer::kAdamW;
  p.global_batch = 12;
  p.microbatches = 3;
  p.groups = {DeviceGroup{{"cuda:0", "cuda:1"}, {3, 1}, GroupParallelism::kData},
              DeviceGroup{{"cpu:0"}, {4}, GroupParallelism::kData}};
  p.stages = {Stage{0, 4, 0, Checkpointing::kFull, Offload::kNone}, Stage{5, 9, 1, Checkpointing::kNone, Offload::kOptimizerState}};
  p.unused_devices = {UnusedDevice{"cuda:2", "too slow"}};
  p.prediction.step_time = Seconds(0.125);
  p.prediction.samples_per_second = 96;
  p.prediction.energy = Joules(12.5);
  p.prediction.devices = {DevicePrediction{"cuda:0", Bytes(1 << 30), Seconds(0.1), Joules(7)}};
  return p;
}

TEST(PlanJson, RoundTripsEveryField) {
  const Plan p = sample_plan();
  const Json j = plan_to_json(p);
  EXPECT_EQ(j["format"], "partita.plan");
  EXPECT_EQ(j["version"], 1);
  const Plan q = plan_from_json(j);
  EXPECT_EQ(plan_to_json(q).dump(), j.dump());
  EXPECT_EQ(q.stages[1].offload, Offload::kOptimizerState);
  EXPECT_EQ(q.groups[0].batch_shares, (std::vector<int>{3, 1}));
}

TEST(PlanJson, IsByteIdentical) {
  EXPECT_EQ(plan_to_json(sample_plan()).dump(2), plan_to_json(sample_plan()).dump(2));
}

TEST(PlanJson, RefusesOtherFormatsVersionsAndBadFields) {
  Json j = plan_to_json(sample_plan());
  Json wrong = j;
  wrong["version"] = 2;
  EXPECT_THROW(plan_from_json(wrong), Error);
  wrong = j;
  wrong["format"] = "something";
  EXPECT_THROW(plan_from_json(wrong), Error);
  wrong = j;
  wrong.erase("stages");
  EXPECT_THROW(plan_from_json(wrong), Error);
  wrong = j;
  wrong["schedule"] = "zigzag";
  EXPECT_THROW(plan_from_json(wrong), Error);
  wrong = j;
  wrong["microbatches"] = 5;
  EXPECT_THROW(plan_from_json(wrong), Error);
}

}  // namespace
}  // namespace partita

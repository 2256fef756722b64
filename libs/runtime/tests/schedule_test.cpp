#include "partita/runtime/schedule.h"

#include <gtest/gtest.h>

namespace partita {

namespace {
std::string text(const std::vector<ScheduledTask>& tasks) {
  std::string s;
  for (const auto& t : tasks) s += (t.backward ? "B" : "F") + std::to_string(t.microbatch) + " ";
  return s;
}
}  // namespace

TEST(Schedule, GPipeRunsAllForwardsThenAllBackwards) {
  EXPECT_EQ(text(stage_schedule(Schedule::kGPipe, 0, 2, 3, true)), "F0 F1 F2 B0 B1 B2 ");
  EXPECT_EQ(text(stage_schedule(Schedule::kGPipe, 1, 2, 3, false)), "F0 F1 F2 ");
}

TEST(Schedule, OneFOneBWarmsUpByDistanceToTheLastStage) {
  // 3 stages, 4 microbatches: stage 0 warms up with 2 forwards, the last stage alternates at once.
  EXPECT_EQ(text(stage_schedule(Schedule::kOneFOneB, 0, 3, 4, true)), "F0 F1 F2 B0 F3 B1 B2 B3 ");
  EXPECT_EQ(text(stage_schedule(Schedule::kOneFOneB, 1, 3, 4, true)), "F0 F1 B0 F2 B1 F3 B2 B3 ");
  EXPECT_EQ(text(stage_schedule(Schedule::kOneFOneB, 2, 3, 4, true)), "F0 B0 F1 B1 F2 B2 F3 B3 ");
  // Fewer microbatches than stages: warm-up is capped.
  EXPECT_EQ(text(stage_schedule(Schedule::kOneFOneB, 0, 4, 2, true)), "F0 F1 B0 B1 ");
}

TEST(Schedule, OneFOneBKeepsAtMostStagesMinusSMicrobatchesAlive) {
  for (int stages = 1; stages <= 5; ++stages) {
    for (int m = 1; m <= 9; ++m) {
      for (int s = 0; s < stages; ++s) {
        int alive = 0, peak = 0, f = 0, b = 0;
        for (const auto& t : stage_schedule(Schedule::kOneFOneB, s, stages, m, true)) {
          alive += t.backward ? -1 : 1;
          peak = std::max(peak, alive);
          (t.backward ? b : f)++;
        }
        EXPECT_EQ(f, m);
        EXPECT_EQ(b, m);
        EXPECT_EQ(peak, std::min(stages - s, m));
      }
    }
  }
}

}  // namespace partita

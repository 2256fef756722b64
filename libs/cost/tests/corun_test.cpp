#include "partita/cost/corun.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

TEST(CoRunSlowdown, SteadyWorkersGiveTheirContentionOnly) {
  const std::vector<CoRunRound> rounds = {
      {{1.0, 1.0, 1.0}, {{1.2, 1.2}, {1.2, 1.2}, {1.2, 1.2}}},
  };
  const CoRunSlowdown d = corun_slowdown(rounds);
  EXPECT_DOUBLE_EQ(d.contention, 1.2);
  EXPECT_DOUBLE_EQ(d.stragglers, 1.0);
  EXPECT_DOUBLE_EQ(d.factor(), 1.2);
}

TEST(CoRunSlowdown, ContentionIsPairedWithinARoundSoAMachineSpeedChangeCancels) {
  // The whole machine is 2x slower in the second round; within each round together costs 1.25x alone.
  const std::vector<CoRunRound> rounds = {
      {{1.0, 1.0}, {{1.25, 1.25}, {1.25, 1.25}}},
      {{2.0, 2.0}, {{2.5, 2.5}, {2.5, 2.5}}},
      {{1.0, 1.0}, {{1.25, 1.25}, {1.25, 1.25}}},
  };
  const CoRunSlowdown d = corun_slowdown(rounds);
  EXPECT_DOUBLE_EQ(d.contention, 1.25);
  ASSERT_EQ(d.round_contention.size(), 3u);
  EXPECT_DOUBLE_EQ(d.round_contention[1], 1.25);
  // Both workers were slow in the same round: every step's slowest worker is at its own median or below it.
  EXPECT_DOUBLE_EQ(d.stragglers, 1.0);
}

TEST(CoRunSlowdown, WorkersSlowAtDifferentStepsMakeEveryStepWaitForTheSlowOne) {
  // Each worker is 2x slow in a different third of the steps: either median is 1, yet two steps in three wait
  // for a slow worker, so the median step is 2x a worker's median.
  const std::vector<CoRunRound> rounds = {
      {{1.0}, {{2.0, 1.0}, {1.0, 2.0}, {1.0, 1.0}}},
      {{1.0}, {{2.0, 1.0}, {1.0, 2.0}, {1.0, 1.0}}},
  };
  const CoRunSlowdown d = corun_slowdown(rounds);
  EXPECT_DOUBLE_EQ(d.contention, 1.0);
  EXPECT_DOUBLE_EQ(d.stragglers, 2.0);
}

TEST(CoRunSlowdown, AWorkerSlowForAWholeRoundIsAStragglerNotContention) {
  // Worker 1 runs 2x slow through the middle round: worker 0 is never slowed, yet a third of the steps wait.
  std::vector<CoRunRound> rounds = {
      {{1.0}, {{1.0, 1.0}, {1.0, 1.0}}},
      {{1.0}, {{1.0, 2.0}, {1.0, 2.0}}},
      {{1.0}, {{1.0, 1.0}, {1.0, 1.0}}},
  };
  CoRunSlowdown d = corun_slowdown(rounds);
  EXPECT_DOUBLE_EQ(d.contention, 1.0);
  EXPECT_DOUBLE_EQ(d.stragglers, 1.0);  // a third of the steps is not the median
  rounds.push_back({{1.0}, {{1.0, 2.0}, {1.0, 2.0}}});
  rounds.push_back({{1.0}, {{1.0, 2.0}, {1.0, 2.0}}});
  d = corun_slowdown(rounds);
  // Slow in most rounds, 2 is worker 1's own median: steps are measured against each worker's typical step,
  // and a worker that is usually slow is a slower device (its own cost row), not a straggler.
  EXPECT_DOUBLE_EQ(d.stragglers, 1.0);
}

TEST(CoRunSlowdown, WorkersAreComparedWithTheirOwnMedians) {
  // Worker 1 is a slower core group (3x) but steady: it does not make worker 0's row slower.
  const std::vector<CoRunRound> rounds = {{{1.0}, {{1.0, 3.0}, {1.0, 3.0}, {1.1, 3.0}}}};
  const CoRunSlowdown d = corun_slowdown(rounds);
  EXPECT_DOUBLE_EQ(d.contention, 1.0);
  EXPECT_DOUBLE_EQ(d.stragglers, 1.0);
}

TEST(CoRunSlowdown, NoiseNeverMakesContentionASpeedUp) {
  const std::vector<CoRunRound> rounds = {{{1.0, 1.2, 1.1}, {{0.9}, {0.9}, {0.9}}}};
  const CoRunSlowdown d = corun_slowdown(rounds);
  EXPECT_DOUBLE_EQ(d.contention, 1.0);
  EXPECT_NEAR(d.round_contention[0], 0.9 / 1.1, 1e-12);  // the log shows the raw ratio
}

TEST(CoRunSlowdown, RefusesIncompleteSamples) {
  EXPECT_THROW(corun_slowdown({}), Error);                              // no round
  EXPECT_THROW(corun_slowdown({{{}, {{1.0, 1.0}}}}), Error);            // nothing alone
  EXPECT_THROW(corun_slowdown({{{1.0}, {}}}), Error);                   // nothing together
  EXPECT_THROW(corun_slowdown({{{1.0}, {{1.0, 1.0}, {1.0}}}}), Error);  // a step missing a worker
  EXPECT_THROW(corun_slowdown({{{1.0}, {{1.0, 0.0}}}}), Error);         // not a time
}

}  // namespace
}  // namespace partita

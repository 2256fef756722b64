#include "partita/torch_bridge/timing.h"

#include <string>

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

TEST(TimingTest, RunsWarmupThenRepeatsUpToTheMaximum) {
  int runs = 0;
  const TimingResult r = time_repeated([&] { ++runs; }, TimingOptions{2, 3, 7, Seconds(3600), {}});
  EXPECT_EQ(r.repeats, 7);  // the budget is never spent: max_repeats decides
  EXPECT_EQ(runs, 2 + 7);
  EXPECT_GE(r.median.value(), r.min.value());
}

TEST(TimingTest, UntimedSetupRunsBeforeEveryRunIncludingWarmup) {
  std::string order;
  int syncs = 0;
  TimingOptions o{1, 2, 2, Seconds(0), {}};
  o.sync = [&] { ++syncs; };
  const TimingResult r = time_repeated([&] { order += 'r'; }, o, [&] { order += 's'; });
  EXPECT_EQ(r.repeats, 2);
  EXPECT_EQ(order, "srsrsr");
  // After each run, and after each timed run's setup (its device work must not run into the clock).
  EXPECT_EQ(syncs, 3 + 2);
}

TEST(TimingTest, RejectsImpossibleOptions) {
  EXPECT_THROW((TimingOptions{-1, 1, 1, Seconds(0), {}}.validate()), Error);
  EXPECT_THROW((TimingOptions{0, 3, 2, Seconds(0), {}}.validate()), Error);
  EXPECT_THROW((TimingOptions{0, 0, 0, Seconds(0), {}}.validate()), Error);
  EXPECT_NO_THROW((TimingOptions{0, 0, 1, Seconds(0), {}}.validate()));
}

}  // namespace
}  // namespace partita

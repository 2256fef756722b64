#include "partita/core/statistics.h"

#include <limits>

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

TEST(StatisticsTest, MedianOfOddAndEvenCounts) {
  EXPECT_EQ(median_of({}), 0.0);
  EXPECT_EQ(median_of({3.0, 1.0, 2.0}), 2.0);
  EXPECT_EQ(median_of({4.0, 1.0, 3.0, 2.0}), 2.5);
  EXPECT_EQ(median_of({7.0}), 7.0);
}

TEST(StatisticsTest, MedianIgnoresOneOutlier) { EXPECT_EQ(median_of({10.0, 11.0, 9.0, 1000.0, 10.5}), 10.5); }

TEST(StatisticsTest, RoundRatiosPairEachRoundWithItself) {
  // The machine ran twice as slow in round 2 for both jobs: every ratio is still 2 (the candidate twice as
  // fast), and the rounds agree.
  const RoundRatios r = round_ratios({10.0, 20.0, 10.0}, {5.0, 10.0, 5.0});
  EXPECT_EQ(r.per_round, (std::vector<double>{2.0, 2.0, 2.0}));
  EXPECT_EQ(r.spread(), 0.0);
}

TEST(StatisticsTest, ASlowWindowOfOneJobShowsAsSpread) {
  // Round 1 caught the candidate in a slow stretch: that round says 0.5x, the others 1x.
  const RoundRatios r = round_ratios({10.0, 10.0, 10.0}, {10.0, 20.0, 10.0});
  EXPECT_EQ(r.per_round, (std::vector<double>{1.0, 0.5, 1.0}));
  EXPECT_EQ(r.lowest, 0.5);
  EXPECT_EQ(r.highest, 1.0);
  EXPECT_DOUBLE_EQ(r.spread(), 1.0);
}

TEST(StatisticsTest, RoundRatiosRefuseBadRounds) {
  EXPECT_THROW(round_ratios({}, {}), Error);
  EXPECT_THROW(round_ratios({1.0, 2.0}, {1.0}), Error);
  EXPECT_THROW(round_ratios({1.0}, {0.0}), Error);
  EXPECT_THROW(round_ratios({-1.0}, {1.0}), Error);
  EXPECT_THROW(round_ratios({1.0}, {std::numeric_limits<double>::infinity()}), Error);
}

}  // namespace
}  // namespace partita

#include "partita/search/range_line_max.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace partita {
namespace {

// The oracle: every entry of the range evaluated at x.
double brute_max(const std::vector<double>& slope, const std::vector<double>& intercept, int first, int last,
                 double x) {
  double best = slope[static_cast<size_t>(first)] * x + intercept[static_cast<size_t>(first)];
  for (int i = first + 1; i <= last; ++i)
    best = std::max(best, slope[static_cast<size_t>(i)] * x + intercept[static_cast<size_t>(i)]);
  return best;
}

TEST(RangeLineMax, MatchesEveryEntryEvaluatedOnRandomLinesRangesAndPoints) {
  std::mt19937 rng(7);
  // Small integers make equal slopes, parallel lines and ties common.
  std::uniform_int_distribution<int> small(-6, 6);
  std::uniform_real_distribution<double> wide(-1e6, 1e6);
  for (int trial = 0; trial < 80; ++trial) {
    const int n = trial < 60 ? 1 + trial % 23 : 40 + trial;  // up to 119: several sparse levels
    std::vector<double> slope, intercept;
    for (int i = 0; i < n; ++i) {
      slope.push_back(trial % 2 ? small(rng) : wide(rng));
      intercept.push_back(trial % 2 ? small(rng) : wide(rng));
    }
    const RangeLineMax table(slope, intercept);
    for (int first = 0; first < n; ++first) {
      for (int last = first; last < n; ++last) {
        for (double x : {0.0, 0.5, 1.0, 1.5, 3.0, 17.0, 1000.0}) {
          const RangeLineMax::Best best = table.max_at(first, last, x);
          const double want = brute_max(slope, intercept, first, last, x);
          ASSERT_DOUBLE_EQ(best.value, want) << "n " << n << " [" << first << ", " << last << "] x " << x;
          // The entry it names is inside the range and reaches the maximum.
          ASSERT_GE(best.index, first);
          ASSERT_LE(best.index, last);
          EXPECT_DOUBLE_EQ(
              slope[static_cast<size_t>(best.index)] * x + intercept[static_cast<size_t>(best.index)], want);
        }
      }
    }
  }
}

// max_at_less against every entry evaluated, some counting less (how the stage model takes off a returned
// gradient at its producer): random lines, every range, a random subset of its entries marked.
TEST(RangeLineMax, MaxAtLessMatchesEveryEntryEvaluatedLessItsAmount) {
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> small(-6, 6);
  std::bernoulli_distribution marked(0.3);
  for (int trial = 0; trial < 30; ++trial) {
    const int n = 1 + trial % 17;
    std::vector<double> slope, intercept;
    for (int i = 0; i < n; ++i) {
      slope.push_back(small(rng));
      intercept.push_back(small(rng));
    }
    const RangeLineMax table(slope, intercept);
    for (int first = 0; first < n; ++first) {
      for (int last = first; last < n; ++last) {
        std::vector<std::pair<int, double>> less;  // (entry, how much less at any x)
        for (int i = first; i <= last; ++i) {
          if (marked(rng)) less.emplace_back(i, 1 + small(rng) + 6);
        }
        for (double x : {0.0, 1.0, 2.5, 40.0}) {
          double want = -1e300;
          for (int i = first, k = 0; i <= last; ++i) {
            double value = slope[static_cast<size_t>(i)] * x + intercept[static_cast<size_t>(i)];
            if (k < static_cast<int>(less.size()) && less[static_cast<size_t>(k)].first == i)
              value -= less[static_cast<size_t>(k++)].second;
            want = std::max(want, value);
          }
          const RangeLineMax::Best best = table.max_at_less(
              first, last, x, less, [](const auto& e) { return e.first; },
              [](const auto& e) { return e.second; });
          ASSERT_DOUBLE_EQ(best.value, want) << "n " << n << " [" << first << ", " << last << "] x " << x;
          ASSERT_GE(best.index, first);
          ASSERT_LE(best.index, last);
        }
      }
    }
  }
}

// Intercepts all 0 (lines through the origin, the usual graph's bytes): at x > 0 the answer is x times the
// largest slope of the range, the first entry with it named (a sparse table answers these).
TEST(RangeLineMax, LinesThroughTheOriginNameTheFirstSteepestEntry) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> small(-4, 4);
  for (int n : {1, 2, 3, 5, 8, 13, 31, 64}) {
    std::vector<double> slope;
    for (int i = 0; i < n; ++i) slope.push_back(small(rng));
    const RangeLineMax table(slope, std::vector<double>(static_cast<size_t>(n), 0.0));
    for (int first = 0; first < n; ++first) {
      for (int last = first; last < n; ++last) {
        int steepest = first;
        for (int i = first; i <= last; ++i)
          if (slope[static_cast<size_t>(i)] > slope[static_cast<size_t>(steepest)]) steepest = i;
        for (double x : {0.5, 1.0, 17.0}) {
          const RangeLineMax::Best best = table.max_at(first, last, x);
          ASSERT_EQ(best.index, steepest) << "n " << n << " [" << first << ", " << last << "]";
          ASSERT_DOUBLE_EQ(best.value, slope[static_cast<size_t>(steepest)] * x);
        }
        // At x <= 0 the flattest line wins: the envelopes answer.
        ASSERT_DOUBLE_EQ(
            table.max_at(first, last, -2.0).value,
            brute_max(slope, std::vector<double>(static_cast<size_t>(n), 0.0), first, last, -2.0));
      }
    }
  }
}

// Which entry wins depends on x: a steep line with a low intercept overtakes a flat high one.
TEST(RangeLineMax, TheWinningEntryMovesWithX) {
  const RangeLineMax table({1.0, 10.0, 0.0}, {100.0, 0.0, -5.0});
  EXPECT_EQ(table.max_at(0, 2, 1.0).index, 0);   // 101 against 10
  EXPECT_EQ(table.max_at(0, 2, 20.0).index, 1);  // 200 against 120
  EXPECT_DOUBLE_EQ(table.max_at(2, 2, 20.0).value, -5.0);
  EXPECT_EQ(table.max_at(1, 2, 0.0).index, 1);  // 0 against -5
}

}  // namespace
}  // namespace partita

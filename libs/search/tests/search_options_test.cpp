#include "partita/search/search_options.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

TEST(SearchOptions, ValidateNamesBadFields) {
  SearchOptions o;
  EXPECT_NO_THROW(o.validate());
  o.global_batch = 0;
  EXPECT_THROW(o.validate(), Error);
  o = SearchOptions{};
  o.memory_limit = Bytes(0);
  EXPECT_THROW(o.validate(), Error);
  o = SearchOptions{};
  o.max_blocks = 0;
  EXPECT_THROW(o.validate(), Error);
}

TEST(SearchOptions, NamesRoundTrip) {
  for (auto s : {StrategyKind::kAuto, StrategyKind::kData, StrategyKind::kPipeline, StrategyKind::kHybrid,
                 StrategyKind::kBranch, StrategyKind::kTensor, StrategyKind::kEven}) {
    EXPECT_EQ(parse_strategy(strategy_name(s)), s);
  }
  EXPECT_EQ(parse_objective("balanced"), Objective::kBalanced);
  EXPECT_EQ(parse_mode("inference"), Mode::kInference);
  EXPECT_THROW(parse_objective("speed"), Error);
}

}  // namespace
}  // namespace partita

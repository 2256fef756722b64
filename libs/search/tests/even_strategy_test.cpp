#include "partita/search/even_strategy.h"

#include <gtest/gtest.h>

#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

TEST(EvenStrategy, EqualFlopBearingNodesPerDevice) {
  const Graph g =
      chain_graph(std::vector<double>(8, 1e9), std::vector<int64_t>(8, 16), std::vector<int64_t>(8, 16));
  const Cluster c = make_cluster({make_spec("fast", 4), make_spec("slow", 1)}, make_link(100));
  const CostTable t = table_for(g, c);
  SearchOptions o;
  o.global_batch = 8;
  const StageModel m(g, c, t, o);
  const auto p = even_pipeline_plan(m);
  ASSERT_TRUE(p);
  ASSERT_EQ(p->stages.size(), 2u);
  EXPECT_EQ(p->stages[0].last, 3);
  EXPECT_EQ(p->microbatches, 8);
  EXPECT_EQ(even_candidates(m).size(), 2u);
}

}  // namespace
}  // namespace partita

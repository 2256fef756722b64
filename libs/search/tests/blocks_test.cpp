#include "partita/search/blocks.h"

#include <gtest/gtest.h>

#include "partita/search/model_spec.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

TEST(Blocks, EveryNodeWhenFew) {
  const Graph g = chain_graph({1, 1, 1}, {4, 4, 4}, {4, 4, 4});
  const Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  const CostTable t = table_for(g, c);
  const StageModel m(g, c, t, SearchOptions{});
  EXPECT_EQ(block_ends(m, 10), (std::vector<NodeId>{0, 1, 2}));
}

TEST(Blocks, TransformerCutsFallOnResidualBoundaries) {
  ModelSpec s;
  s.name = "tiny";
  s.layers = 8;
  s.width = 64;
  s.heads = 4;
  s.seq = 16;
  s.vocab = 100;
  const Graph g = build_model_graph(s, 1);
  const Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  const CostTable t = table_for(g, c);
  const StageModel m(g, c, t, SearchOptions{});
  const auto ends = block_ends(m, 9);
  ASSERT_EQ(ends.size(), 9u);
  EXPECT_EQ(ends.back(), g.num_nodes() - 1);
  for (size_t i = 0; i + 1 < ends.size(); ++i) {
    // Only the residual stream (seq x width floats) crosses a chosen cut.
    EXPECT_DOUBLE_EQ(m.boundary(ends[i]).per_sample, 16.0 * 64 * 4) << i << " " << g.node(ends[i]).op;
  }
}

}  // namespace
}  // namespace partita

#include "partita/search/graph_identity.h"

#include <gtest/gtest.h>

#include "test_support.h"

namespace partita {
namespace {

TEST(GraphIdentity, StableAndSensitiveToOps) {
  Graph a = testing::chain_graph({1, 2}, {4, 4}, {4, 4});
  const Graph b = testing::chain_graph({5, 6}, {8, 8}, {8, 8});
  EXPECT_EQ(graph_identity(a), graph_identity(b));  // same ops in the same order
  EXPECT_EQ(graph_identity(a).op_hash.size(), 16u);
  a.node(1).op = "aten::relu";
  EXPECT_NE(graph_identity(a), graph_identity(b));
  EXPECT_EQ(graph_identity(a).num_nodes, 2);
}

}  // namespace
}  // namespace partita

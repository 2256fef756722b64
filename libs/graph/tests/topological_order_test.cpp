#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "partita/graph/analysis.h"
#include "test_graphs.h"

namespace partita {
namespace {

using namespace partita::testing;
using Ids = std::vector<NodeId>;

TEST(TopologicalOrder, EqualsNodeOrderForBuiltGraphs) {
  EXPECT_EQ(topological_order(diamond()), (Ids{0, 1, 2, 3}));
  const Graph g = inception();
  Ids identity(g.nodes().size());
  for (size_t i = 0; i < identity.size(); ++i) identity[i] = static_cast<NodeId>(i);
  EXPECT_EQ(topological_order(g), identity);
  EXPECT_TRUE(topological_order(Graph{}).empty());
}

TEST(TopologicalOrder, ReordersNodesStoredOutOfOrder) {
  Graph g;  // n0 uses v, which n1 produces; n2 is independent: Kahn, smallest ready id first.
  const ValueId x = input(g, {2});
  const ValueId v = tensor(g, {2});
  op(g, "aten::relu", {v}, {2});
  g.add_node("aten::neg", {x}, {v});
  op(g, "aten::exp", {x}, {2});
  EXPECT_EQ(topological_order(g), (Ids{1, 0, 2}));
}

TEST(TopologicalOrder, CycleIsAnError) {
  Graph g;
  const ValueId a = tensor(g, {2});
  const ValueId b = tensor(g, {2});
  g.add_node("aten::relu", {b}, {a});
  g.add_node("aten::relu", {a}, {b});
  EXPECT_THROW(topological_order(g), Error);
}

TEST(TopologicalOrder, PredecessorsAndSuccessorsAreDistinctAndSorted) {
  Graph g;
  const ValueId x = input(g, {2});
  const ValueId a = op(g, "aten::relu", {x}, {2});
  op(g, "aten::mul", {a, a}, {2});  // two uses of one producer count once
  const auto preds = node_predecessors(g);
  const auto succs = node_successors(g);
  EXPECT_EQ(preds[0], Ids{});
  EXPECT_EQ(preds[1], Ids{0});
  EXPECT_EQ(succs[0], Ids{1});
  const auto d = node_successors(diamond());
  EXPECT_EQ(d[0], (Ids{1, 2}));
  EXPECT_EQ(node_predecessors(diamond())[3], (Ids{1, 2}));
}

}  // namespace
}  // namespace partita

#include <gtest/gtest.h>

#include "partita/graph/analysis.h"
#include "test_graphs.h"

namespace partita {
namespace {

using namespace partita::testing;
using Ids = std::vector<NodeId>;

std::vector<Ids> node_lists(const BranchRegion& r) {
  std::vector<Ids> out;
  for (const auto& b : r.branches) out.push_back(b.nodes);
  return out;
}

TEST(IndependentBranches, Diamond) {
  const auto regions = independent_branches(diamond());
  ASSERT_EQ(regions.size(), 1u);
  EXPECT_EQ(regions[0].fork, 0);
  EXPECT_EQ(regions[0].join, 3);
  EXPECT_EQ(node_lists(regions[0]), (std::vector<Ids>{{1}, {2}}));
  EXPECT_EQ(regions[0].non_trivial_branches(), 2);
}

TEST(IndependentBranches, ChainHasNone) { EXPECT_TRUE(independent_branches(chain(5)).empty()); }

TEST(IndependentBranches, InceptionIsOneRegionOfFourBranches) {
  const auto regions = independent_branches(inception());
  ASSERT_EQ(regions.size(), 1u);
  EXPECT_EQ(regions[0].fork, 0);
  EXPECT_EQ(regions[0].join, 8);  // the ListConstruct feeding cat
  EXPECT_EQ(node_lists(regions[0]), (std::vector<Ids>{{1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(regions[0].non_trivial_branches(), 4);
}

TEST(IndependentBranches, ResidualWithIdentityShortcut) {
  const auto regions = independent_branches(residual(false));
  ASSERT_EQ(regions.size(), 1u);
  EXPECT_EQ(regions[0].fork, 0);
  EXPECT_EQ(regions[0].join, 6);
  EXPECT_EQ(node_lists(regions[0]), (std::vector<Ids>{{1, 2, 3, 4, 5}, {}}));
  EXPECT_FALSE(regions[0].branches[0].trivial);
  EXPECT_TRUE(regions[0].branches[1].trivial);
  EXPECT_EQ(regions[0].non_trivial_branches(), 1);
}

TEST(IndependentBranches, ResidualWithDownsample) {
  const auto regions = independent_branches(residual(true));
  ASSERT_EQ(regions.size(), 1u);
  EXPECT_EQ(regions[0].join, 8);
  EXPECT_EQ(node_lists(regions[0]), (std::vector<Ids>{{1, 2, 3, 4, 5}, {6, 7}}));
}

TEST(IndependentBranches, ShapeBookkeepingAloneIsNotARegion) {
  Graph g;  // h = relu(x); view(h, [size(h, 0), -1]): the size chain is structural only.
  const ValueId x = input(g, {2, 3, 4});
  const ValueId h = op(g, "aten::relu", {x}, {2, 3, 4});
  const ValueId n = g.add_value(ValueKind::kScalar, "n");
  g.add_node("aten::size", {h, int_constant(g, "0")}, {n});
  const ValueId shape = g.add_value(ValueKind::kList, "");
  g.add_node("prim::ListConstruct", {n, int_constant(g, "-1")}, {shape});
  g.set_outputs({op(g, "aten::view", {h, shape}, {2, 12})});
  EXPECT_TRUE(independent_branches(g).empty());
}

TEST(IndependentBranches, UserInputCanFork) {
  Graph g;  // x feeds n0 and n1 directly; they meet at n2.
  const ValueId x = input(g, {4});
  const ValueId a = op(g, "aten::exp", {x}, {4});
  const ValueId b = op(g, "aten::neg", {x}, {4});
  g.set_outputs({op(g, "aten::add", {a, b, int_constant(g, "1")}, {4})});
  const auto regions = independent_branches(g);
  ASSERT_EQ(regions.size(), 1u);
  EXPECT_EQ(regions[0].fork, kNoNode);
  EXPECT_EQ(regions[0].fork_input, x);
  EXPECT_EQ(regions[0].join, 2);
  EXPECT_EQ(node_lists(regions[0]), (std::vector<Ids>{{0}, {1}}));
}

TEST(IndependentBranches, HeadsJoinAtTheOutputs) {
  Graph g;  // n0 trunk; heads n1 -> n3 and n2 returned separately; the paths only meet at the outputs.
  const ValueId x = input(g, {4});
  const ValueId t = op(g, "aten::neg", {x}, {4});
  const ValueId h1 = op(g, "aten::relu", {t}, {4});
  const ValueId h2 = op(g, "aten::tanh", {t}, {4});
  g.set_outputs({op(g, "aten::exp", {h1}, {4}), h2});
  const auto regions = independent_branches(g);
  ASSERT_EQ(regions.size(), 1u);
  EXPECT_EQ(regions[0].fork, 0);
  EXPECT_EQ(regions[0].join, kNoNode);
  EXPECT_EQ(node_lists(regions[0]), (std::vector<Ids>{{1, 3}, {2}}));
}

TEST(IndependentBranches, NestedRegionsAreBothReported) {
  Graph g;  // n0 fork; inner diamond n1 -> {n2, n3} -> n4; outer shortcut n0 -> n5 add.
  const ValueId x = input(g, {4});
  const ValueId a = op(g, "aten::relu", {x}, {4});
  const ValueId b = op(g, "aten::exp", {a}, {4});
  const ValueId c = op(g, "aten::neg", {b}, {4});
  const ValueId d = op(g, "aten::tanh", {b}, {4});
  const ValueId e = op(g, "aten::mul", {c, d}, {4});
  g.set_outputs({op(g, "aten::add", {e, a, int_constant(g, "1")}, {4})});
  const auto regions = independent_branches(g);
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[0].fork, 0);
  EXPECT_EQ(regions[0].join, 5);
  EXPECT_EQ(node_lists(regions[0]), (std::vector<Ids>{{1, 2, 3, 4}, {}}));
  EXPECT_EQ(regions[1].fork, 1);
  EXPECT_EQ(regions[1].join, 4);
  EXPECT_EQ(node_lists(regions[1]), (std::vector<Ids>{{2}, {3}}));
}

TEST(IndependentBranches, ScalesToTenThousandNodes) {
  Graph g;  // 4000 residual blocks h = add(neg(exp(h)), h): 12001 nodes, one region per block.
  ValueId h = op(g, "aten::relu", {input(g, {4})}, {4});
  const ValueId one = int_constant(g, "1");
  for (int i = 0; i < 4000; ++i) {
    const ValueId m = op(g, "aten::neg", {op(g, "aten::exp", {h}, {4})}, {4});
    h = op(g, "aten::add", {m, h, one}, {4});
  }
  g.set_outputs({h});
  const auto regions = independent_branches(g);
  ASSERT_EQ(regions.size(), 4000u);
  EXPECT_EQ(regions.back().fork, 3 * 3999);
  EXPECT_EQ(regions.back().join, 3 * 4000);
  EXPECT_EQ(cut_points(g).size(), 12000u);
  EXPECT_EQ(best_cut_points(g, 3).size(), 3u);
}

}  // namespace
}  // namespace partita

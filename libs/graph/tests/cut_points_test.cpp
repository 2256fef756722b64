#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "partita/graph/analysis.h"
#include "test_graphs.h"

namespace partita {
namespace {

using namespace partita::testing;
using Ids = std::vector<ValueId>;

TEST(CutPoints, DiamondCrossingValues) {
  Graph g = diamond();  // values: 0 x, 1 a, 2 b, 3 c, 4 alpha constant, 5 d; each tensor 16 bytes
  for (auto& n : g.mutable_nodes()) n.cost.flops = Flops(10.0 * (n.id + 1));
  const auto cuts = cut_points(g);
  ASSERT_EQ(cuts.size(), 3u);
  EXPECT_EQ(cuts[0].position, 0);
  EXPECT_EQ(cuts[0].after_node, 0);
  EXPECT_EQ(cuts[0].values, Ids{1});
  EXPECT_EQ(cuts[0].bytes, Bytes(16));
  EXPECT_EQ(cuts[0].flops_before, Flops(10));
  EXPECT_EQ(cuts[1].values, (Ids{1, 2}));
  EXPECT_EQ(cuts[1].bytes, Bytes(32));
  EXPECT_EQ(cuts[2].values, (Ids{2, 3}));
  EXPECT_EQ(cuts[2].flops_before, Flops(60));
  EXPECT_EQ(cut_bytes(g), (std::vector<Bytes>{Bytes(16), Bytes(32), Bytes(32)}));
}

TEST(CutPoints, UserInputsCrossButParametersAndConstantsDoNot) {
  Graph g;
  const ValueId x = input(g, {2, 8});                       // 64 bytes
  const ValueId mask = input(g, {2}, "mask");               // 8 bytes, used at the end
  const ValueId w = parameter(g, "w", {8, 8});              // used at the start and the end
  const ValueId h = op(g, "aten::matmul", {x, w}, {2, 8});  // n0
  const ValueId r = op(g, "aten::relu", {h}, {2, 8});       // n1
  const ValueId n = g.add_value(ValueKind::kScalar, "n");   // n2: a scalar crossing counts 8 bytes
  g.add_node("aten::size", {r, int_constant(g, "0")}, {n});
  const ValueId y = op(g, "aten::matmul", {r, w}, {2, 8});       // n3
  g.set_outputs({op(g, "custom::mask", {y, mask, n}, {2, 8})});  // n4
  const auto cuts = cut_points(g);
  ASSERT_EQ(cuts.size(), 4u);
  EXPECT_EQ(cuts[0].values, (Ids{mask, h}));
  EXPECT_EQ(cuts[0].bytes, Bytes(8 + 64));
  EXPECT_EQ(cuts[1].values, (Ids{mask, r}));
  EXPECT_EQ(cuts[2].values, (Ids{mask, r, n}));
  EXPECT_EQ(cuts[2].bytes, Bytes(8 + 64 + 8));
  EXPECT_EQ(cuts[3].values, (Ids{mask, n, y}));
  const auto bytes = cut_bytes(g);
  for (size_t i = 0; i < cuts.size(); ++i) EXPECT_EQ(bytes[i], cuts[i].bytes) << i;
}

// A chain of 8 nodes of 10 FLOPs each; node i's output has size[i] floats, so the cut after i crosses
// 4 * size[i] bytes.
Graph sized_chain(const std::vector<int64_t>& sizes, const std::vector<double>& flops) {
  Graph g;
  ValueId v = input(g, {1});
  for (size_t i = 0; i < sizes.size(); ++i) {
    v = op(g, "aten::relu", {v}, {sizes[i]});
    g.node(static_cast<NodeId>(i)).cost.flops = Flops(flops[i]);
  }
  g.set_outputs({v});
  return g;
}

std::vector<int> positions(const std::vector<CutPoint>& cuts) {
  std::vector<int> out;
  for (const auto& c : cuts) out.push_back(c.position);
  return out;
}

TEST(CutPoints, BestCutsTradeBytesWithinTheBalanceWindow) {
  const Graph g = sized_chain({100, 100, 5, 100, 100, 100, 2, 100}, std::vector<double>(8, 10));
  // k=1: target 40 of 80, window +-10 -> cuts at work 30, 40, 50 (positions 2, 3, 4): position 2 is cheapest.
  auto best = best_cut_points(g, 1);
  EXPECT_EQ(positions(best), std::vector<int>{2});
  EXPECT_EQ(best[0].bytes, Bytes(20));
  EXPECT_EQ(best[0].flops_before, Flops(30));
  // Tight window +-4 leaves only the even split.
  EXPECT_EQ(positions(best_cut_points(g, 1, 0.1)), std::vector<int>{3});
  // k=2: windows [20, 33.3] -> position 2 (20 bytes); [46.7, 60] -> all 400 bytes, nearest 53.3 is
  // position 4.
  EXPECT_EQ(positions(best_cut_points(g, 2)), (std::vector<int>{2, 4}));
  EXPECT_TRUE(best_cut_points(g, 0).empty());
  EXPECT_EQ(positions(best_cut_points(g, 7)), (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
}

TEST(CutPoints, HeavyNodeLeavesTheWindowEmpty) {
  // Work after each position: 1, 2, 102, 103; target 52 +- 13 holds none: nearest even split wins (tie:
  // earlier).
  const Graph g = sized_chain({4, 4, 4, 4, 4}, {1, 1, 100, 1, 1});
  EXPECT_EQ(positions(best_cut_points(g, 1)), std::vector<int>{1});
}

TEST(CutPoints, WithoutFlopsNodesWeighOne) {
  const Graph g = sized_chain({100, 100, 5, 100, 100, 100, 2, 100}, std::vector<double>(8, 0));
  EXPECT_EQ(positions(best_cut_points(g, 1)), std::vector<int>{2});
}

TEST(CutPoints, ChecksArguments) {
  const Graph g = chain(3);
  EXPECT_THROW(best_cut_points(g, 3), Error);
  EXPECT_THROW(best_cut_points(g, -1), Error);
  EXPECT_THROW(best_cut_points(g, 1, 0.0), Error);
  EXPECT_TRUE(cut_points(Graph{}).empty());
  EXPECT_TRUE(cut_bytes(Graph{}).empty());
}

}  // namespace
}  // namespace partita

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "partita/graph/analysis.h"
#include "test_graphs.h"

namespace partita {
namespace {

using namespace partita::testing;
using Ids = std::vector<NodeId>;

std::vector<Seconds> secs(std::initializer_list<double> v) {
  std::vector<Seconds> out;
  for (double s : v) out.emplace_back(s);
  return out;
}

TEST(CriticalPath, DiamondTakesTheHeavierSide) {
  const Graph g = diamond();
  auto cost = secs({1, 5, 3, 2});
  CriticalPath p = critical_path(g, cost);
  EXPECT_EQ(p.nodes, (Ids{0, 1, 3}));
  EXPECT_DOUBLE_EQ(p.length.value(), 8);
  cost = secs({1, 2, 3, 2});
  p = critical_path(g, cost);
  EXPECT_EQ(p.nodes, (Ids{0, 2, 3}));
  EXPECT_DOUBLE_EQ(p.length.value(), 6);
  cost = secs({1, 3, 3, 1});  // tie: smallest id
  EXPECT_EQ(critical_path(g, cost).nodes, (Ids{0, 1, 3}));
}

TEST(CriticalPath, ChainIsEverything) {
  const auto cost = secs({0.5, 0.25, 0.125});
  const CriticalPath p = critical_path(chain(3), cost);
  EXPECT_EQ(p.nodes, (Ids{0, 1, 2}));
  EXPECT_DOUBLE_EQ(p.length.value(), 0.875);
}

TEST(CriticalPath, InceptionLongestBranch) {
  const Graph g = inception();  // nodes: 0 stem | 1 | 2,3 | 4,5 | 6,7 | 8 list | 9 cat
  const auto cost = secs({1, 4, 1, 1, 2, 3, 0.5, 0.5, 0, 1});
  const CriticalPath p = critical_path(g, cost);
  EXPECT_EQ(p.nodes, (Ids{0, 4, 5, 8, 9}));
  EXPECT_DOUBLE_EQ(p.length.value(), 7);
}

TEST(CriticalPath, ChecksCostSizeAndHandlesEmpty) {
  const auto cost = secs({1, 2});
  EXPECT_THROW(critical_path(diamond(), cost), Error);
  const CriticalPath p = critical_path(Graph{}, {});
  EXPECT_TRUE(p.nodes.empty());
  EXPECT_EQ(p.length, Seconds(0));
}

}  // namespace
}  // namespace partita

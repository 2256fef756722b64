#include "partita/search/hybrid_strategy.h"

#include <gtest/gtest.h>

#include <random>

#include "partita/search/blocks.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

TEST(HybridStrategy, MatchesBruteForceOnRandomInstances) {
  std::mt19937 rng(99);
  std::uniform_real_distribution<double> u(0, 1);
  int feasible = 0;
  for (int seed = 0; seed < 200; ++seed) {
    const int layers = 1 + seed % 12, devices = 1 + seed % 4;
    const Graph g = random_chain_graph(rng, layers, 4e6);
    // Two kinds at most, so groups of one kind form.
    const DeviceSpec fast = make_spec("fast", 2 + 6 * u(rng)), slow = make_spec("slow", 1 + u(rng));
    std::vector<DeviceSpec> specs;
    for (int d = 0; d < devices; ++d) specs.push_back(u(rng) < 0.5 ? fast : slow);
    const Cluster c = make_cluster(specs, make_link(1 + 40 * u(rng), 3));
    const CostTable t = table_for(g, c);
    SearchOptions opt;
    opt.global_batch = 8;
    opt.memory_limit = Bytes(static_cast<int64_t>((20 + 100 * u(rng)) * (1 << 20)));
    const StageModel model(g, c, t, opt);
    const auto blocks = block_ends(model, 256);
    const auto layouts = hybrid_layouts(model, static_cast<int>(blocks.size()));
    const int m = 1 << (seed % 3);
    const TensorModel tensor(model);
    const auto got = best_hybrid(model, tensor, blocks, layouts, m, Schedule::kOneFOneB);
    double want = -1;
    for (const auto& slots : layouts) {
      ChainProblem prob{&model, blocks, slots, m, 8 / m, Schedule::kOneFOneB, &tensor};
      if (auto s = partition_chain_brute_force(prob); s && (want < 0 || s->bottleneck.value() < want)) {
        want = s->bottleneck.value();
      }
    }
    ASSERT_EQ(got.has_value(), want >= 0) << "seed " << seed;
    if (!got) continue;
    ++feasible;
    EXPECT_DOUBLE_EQ(got->solution.bottleneck.value(), want) << "seed " << seed;
  }
  EXPECT_GT(feasible, 100);
}

TEST(HybridStrategy, LayoutsCoverEveryCompositionOfSmallKinds) {
  const Graph g = chain_graph({1e9, 1e9, 1e9, 1e9}, {64, 64, 64, 64}, {64, 64, 64, 64});
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("a", 1), make_spec("a", 1)}, make_link(10));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, SearchOptions{});
  // One kind of three devices: compositions 3, 2+1, 1+2, 1+1+1.
  EXPECT_EQ(hybrid_layouts(model, 4).size(), 4u);
}

}  // namespace
}  // namespace partita

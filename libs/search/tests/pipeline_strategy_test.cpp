#include "partita/search/pipeline_strategy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "partita/search/blocks.h"
#include "partita/search/chain_plan.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

// Independent brute force: every ordered subset of devices x every composition of the nodes.
double brute_force(const StageModel& model, const std::vector<NodeId>& blocks, int m) {
  const int k = model.num_devices();
  double best = -1;
  for (unsigned mask = 1; mask < (1u << k); ++mask) {
    std::vector<int> sub;
    for (int i = 0; i < k; ++i)
      if (mask & (1u << i)) sub.push_back(i);
    do {
      ChainProblem p{&model,
                     blocks,
                     single_device_slots(model, sub),
                     m,
                     model.options().global_batch / m,
                     Schedule::kOneFOneB};
      if (auto s = partition_chain_brute_force(p); s && (best < 0 || s->bottleneck.value() < best)) {
        best = s->bottleneck.value();
      }
    } while (std::next_permutation(sub.begin(), sub.end()));
  }
  return best;
}

TEST(PipelineStrategy, MatchesBruteForceOverDeviceOrdersAndCuts) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  int feasible = 0;
  for (int seed = 0; seed < 200; ++seed) {
    const int layers = 1 + seed % 12, devices = 1 + seed % 4;
    const Graph g = random_chain_graph(rng, layers, 1e6);
    std::vector<DeviceSpec> specs;
    for (int d = 0; d < devices; ++d) specs.push_back(make_spec("s" + std::to_string(d), 1 + 7 * u(rng)));
    Cluster c = make_cluster(specs, make_link(10, 2));
    for (int x = 0; x < devices; ++x)
      for (int y = x + 1; y < devices; ++y)
        c.links.push_back(
            ClusterLink{"d" + std::to_string(x), "d" + std::to_string(y), make_link(1 + 40 * u(rng), 3)});
    const CostTable t = table_for(g, c);
    SearchOptions opt;
    opt.global_batch = 8;
    opt.memory_limit = Bytes(static_cast<int64_t>((8 + 80 * u(rng)) * (1 << 20)));
    const StageModel model(g, c, t, opt);
    const auto blocks = block_ends(model, 256);
    const int m = 1 << (seed % 4);
    const auto got = best_pipeline(model, blocks, m, Schedule::kOneFOneB);
    const double want = brute_force(model, blocks, m);
    ASSERT_EQ(got.has_value(), want >= 0) << "seed " << seed;
    if (!got) continue;
    ++feasible;
    EXPECT_DOUBLE_EQ(got->solution.bottleneck.value(), want) << "seed " << seed;
  }
  EXPECT_GT(feasible, 100);
}

TEST(PipelineStrategy, FastDeviceGetsMoreWork) {
  const Graph g =
      chain_graph(std::vector<double>(12, 1e10), std::vector<int64_t>(12, 64), std::vector<int64_t>(12, 64));
  const Cluster c = make_cluster({make_spec("fast", 2), make_spec("slow", 1)}, make_link(100));
  const CostTable t = table_for(g, c);
  SearchOptions opt;
  opt.global_batch = 16;
  const StageModel model(g, c, t, opt);
  const auto plans = pipeline_candidates(model, block_ends(model, 256));
  ASSERT_FALSE(plans.empty());
  const Plan& p = plans.front();
  ASSERT_EQ(p.stages.size(), 2u);
  const auto& fast_stage =
      p.groups[static_cast<size_t>(p.stages[0].group)].devices[0] == "d0" ? p.stages[0] : p.stages[1];
  EXPECT_EQ(fast_stage.last - fast_stage.first + 1, 8);
}

}  // namespace
}  // namespace partita

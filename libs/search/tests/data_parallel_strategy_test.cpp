#include "partita/search/data_parallel_strategy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>

#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

double makespan(const std::vector<int>& s, const std::vector<double>& t) {
  double m = 0;
  for (size_t i = 0; i < s.size(); ++i) m = std::max(m, s[i] * t[i]);
  return m;
}

TEST(DataParallelStrategy, SharesAreOptimalIntegerSplits) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(0.5, 4);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + trial % 4, samples = 1 + trial % 13;
    std::vector<double> t;
    std::vector<int> caps;
    for (int i = 0; i < n; ++i) {
      t.push_back(u(rng));
      caps.push_back(static_cast<int>(rng() % 10));
    }
    const auto got = proportional_shares(samples, t, caps);
    // Brute force over every split.
    double best = -1;
    std::vector<int> cur(static_cast<size_t>(n), 0);
    std::function<void(int, int)> rec = [&](int i, int left) {
      if (i == n - 1) {
        if (left > caps[static_cast<size_t>(i)]) return;
        cur[static_cast<size_t>(i)] = left;
        const double m = makespan(cur, t);
        if (best < 0 || m < best) best = m;
        return;
      }
      for (int k = 0; k <= std::min(left, caps[static_cast<size_t>(i)]); ++k) {
        cur[static_cast<size_t>(i)] = k;
        rec(i + 1, left - k);
      }
    };
    rec(0, samples);
    ASSERT_EQ(got.has_value(), best >= 0) << trial;
    if (got) {
      EXPECT_DOUBLE_EQ(makespan(*got, t), best) << trial;
    }
  }
}

TEST(DataParallelStrategy, TwiceAsFastTakesTwiceTheSamples) {
  const Graph g = chain_graph({1e10, 1e10}, {64, 64}, {1024, 1024});
  const Cluster c = make_cluster({make_spec("fast", 2), make_spec("slow", 1)}, make_link(100));
  const CostTable t = table_for(g, c);
  SearchOptions o;
  o.global_batch = 12;
  const StageModel m(g, c, t, o);
  const auto plans = data_parallel_candidates(m);
  ASSERT_FALSE(plans.empty());
  EXPECT_EQ(plans.front().groups[0].batch_shares, (std::vector<int>{8, 4}));
  EXPECT_EQ(plans.front().microbatches, 1);
  const auto even = even_data_parallel_plan(m);
  ASSERT_TRUE(even);
  EXPECT_EQ(even->groups[0].batch_shares, (std::vector<int>{6, 6}));
}

TEST(DataParallelStrategy, AccumulatesGradientsWhenTheBatchDoesNotFit) {
  const Graph g = chain_graph({1e10, 1e10}, {1 << 16, 1 << 16}, {1024, 1024});
  const Cluster c = make_cluster({make_spec("a", 1, 0.01)}, make_link(100));  // ~10 MiB
  const CostTable t = table_for(g, c);
  SearchOptions o;
  o.global_batch = 64;
  const StageModel m(g, c, t, o);
  const auto plans = data_parallel_candidates(m);
  ASSERT_FALSE(plans.empty());
  EXPECT_GT(plans.front().microbatches, 1);
}

TEST(DataParallelStrategy, OffloadsOptimizerStateFromGpusButNeverFromCpus) {
  // The whole offload_pair_graph on one device with one-sample microbatches needs 17 MiB as is and 13 MiB
  // with Adam's moments on the host.
  SearchOptions o;
  o.global_batch = 4;
  o.memory_limit = Bytes(14 << 20);
  const Graph g = offload_pair_graph();
  const Cluster gpu = uniform_cluster(1, DeviceKind::kCuda);
  const CostTable gt = table_for(g, gpu);
  const auto plans = data_parallel_candidates(StageModel(g, gpu, gt, o));
  ASSERT_FALSE(plans.empty());
  EXPECT_EQ(plans.front().stages[0].offload, Offload::kOptimizerState);
  const Cluster cpu = uniform_cluster(1, DeviceKind::kCpu);
  const CostTable ct = table_for(g, cpu);
  const StageModel cpu_model(g, cpu, ct, o);
  EXPECT_TRUE(data_parallel_candidates(cpu_model).empty());
  EXPECT_FALSE(even_data_parallel_plan(cpu_model).has_value());
}

}  // namespace
}  // namespace partita

#include "partita/search/chain_partition.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "partita/search/blocks.h"
#include "partita/search/chain_plan.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

struct Instance {
  Graph graph;
  Cluster cluster;
  CostTable table;
};

Instance random_instance(std::mt19937& rng, int layers, int devices) {
  std::uniform_real_distribution<double> flops(1e9, 1e10), speed(1, 8);
  std::uniform_int_distribution<int64_t> act(1 << 10, 1 << 16), par(1 << 12, 1 << 20);
  std::vector<double> f;
  std::vector<int64_t> a, p;
  for (int i = 0; i < layers; ++i) {
    f.push_back(flops(rng));
    a.push_back(act(rng));
    p.push_back(par(rng));
  }
  std::vector<DeviceSpec> specs;
  for (int d = 0; d < devices; ++d)
    specs.push_back(make_spec("kind" + std::to_string(d % 2 ? 1 : d), speed(rng), 0.05));
  Instance in{chain_graph(f, a, p),
              make_cluster(specs, make_link(std::uniform_real_distribution<double>(1, 50)(rng), 5)),
              {}};
  // Random per-pair links so the device order matters.
  for (int x = 0; x < devices; ++x) {
    for (int y = x + 1; y < devices; ++y) {
      in.cluster.links.push_back(
          ClusterLink{"d" + std::to_string(x), "d" + std::to_string(y),
                      make_link(std::uniform_real_distribution<double>(1, 50)(rng), 5)});
    }
  }
  in.table = table_for(in.graph, in.cluster);
  return in;
}

TEST(ChainPartition, DynamicProgramMatchesBruteForceOnRandomChains) {
  std::mt19937 rng(12345);
  int compared = 0, feasible = 0;
  for (int seed = 0; seed < 300; ++seed) {
    const int layers = 2 + seed % 11;
    const int devices = 1 + seed % 4;
    Instance in = random_instance(rng, layers, devices);
    SearchOptions opt;
    opt.global_batch = 8;
    opt.graph_batch = 1;
    opt.mode = seed % 5 == 0 ? Mode::kInference : Mode::kTraining;
    opt.memory_limit = Bytes(std::uniform_int_distribution<int64_t>(8 << 20, 96 << 20)(rng));
    const StageModel model(in.graph, in.cluster, in.table, opt);
    std::vector<int> order(static_cast<size_t>(devices));
    for (int d = 0; d < devices; ++d) order[static_cast<size_t>(d)] = d;
    std::shuffle(order.begin(), order.end(), rng);
    const int m = 1 << (seed % 4);
    ChainProblem problem{&model,
                         block_ends(model, 256),
                         single_device_slots(model, order),
                         m,
                         8 / m,
                         seed % 2 ? Schedule::kGPipe : Schedule::kOneFOneB};
    const auto dp = partition_chain(problem);
    const auto brute = partition_chain_brute_force(problem);
    ASSERT_EQ(dp.has_value(), brute.has_value()) << "seed " << seed;
    ++compared;
    if (!dp) continue;
    ++feasible;
    EXPECT_DOUBLE_EQ(dp->bottleneck.value(), brute->bottleneck.value()) << "seed " << seed;
  }
  EXPECT_EQ(compared, 300);
  EXPECT_GT(feasible, 100);
}

// offload_pair_graph on two devices, four one-sample microbatches under 1F1B.
struct OffloadPair {
  Graph graph = offload_pair_graph();
  Cluster cluster;
  CostTable table;
  SearchOptions options;
  OffloadPair(DeviceKind kind, Bytes limit, double host_gbps) : cluster(uniform_cluster(2, kind)) {
    table = table_for(graph, cluster);
    options.global_batch = 4;
    options.memory_limit = limit;
    options.host_bandwidth = BytesPerSecond(host_gbps * 1e9);
  }
  std::optional<ChainSolution> solve(const StageModel& model) const {
    const ChainProblem problem{&model, block_ends(model, 256), single_device_slots(model, {0, 1}), 4,
                               1,      Schedule::kOneFOneB};
    return partition_chain(problem);
  }
};

constexpr int64_t kMiB = 1 << 20;

TEST(ChainPartition, OffloadPairMemoryIsWhatTheFixtureStates) {
  // Stage 0 = layers 0-1 with two one-sample microbatches in flight, every gradient there (the step's
  // microbatches not known). Model state: 1 M + 64 of weights, as much of gradients and twice as much of
  // Adam's moments; workspace: at layer 0's backward the 4 M hidden output's gradient, w0's made afresh
  // (1 M) and the 64-byte gradient of layer 1's result (stage 1 returns it, and it is held through the
  // whole backward), less layer 1's 64-byte result, freed by then; each microbatch keeps the 64-byte input,
  // the 4 M hidden output (saved by layer 1) and layer 1's 64-byte result (saved by layer 2, on the next
  // stage); activation offload moves the 4 M, which dies inside the stage.
  const OffloadPair x(DeviceKind::kCuda, Bytes(12 * kMiB), 25);
  const StageModel model(x.graph, x.cluster, x.table, x.options);
  const double weights = kMiB + 64, state = 4 * weights, ws = 4 * kMiB + kMiB + 64 - 64,
               act = 64 + 4 * kMiB + 64;
  const double moved = 4 * kMiB, moments = 2 * weights;
  const auto mem = [&](Checkpointing c, Offload o) {
    return static_cast<double>(model.memory(StageLoad{0, 1, 1, 2, c, o}).value());
  };
  EXPECT_EQ(mem(Checkpointing::kNone, Offload::kNone), state + ws + 2 * act);  // 17 M + 512
  EXPECT_EQ(mem(Checkpointing::kNone, Offload::kOptimizerState), state - moments + ws + 2 * act);
  EXPECT_EQ(mem(Checkpointing::kNone, Offload::kActivations), state + ws + 2 * (act - moved) + moved);
  EXPECT_EQ(mem(Checkpointing::kFull, Offload::kNone), state + ws + 2 * 64 + act);  // 13 M + 512
  EXPECT_EQ(mem(Checkpointing::kNone, Offload::kActivationsAndOptimizerState),
            state - moments + ws + 2 * (act - moved) + moved);  // 11 M + 384
  EXPECT_EQ(mem(Checkpointing::kFull, Offload::kOptimizerState), state - moments + ws + 2 * 64 + act);
  // Stage 1 = layer 2, one microbatch in flight: 1 M of weights (4 M of state); activations of its 64-byte
  // input, the loss's 64-byte tensor of the output's size and its target (cross-entropy's 8-byte class
  // index), the output itself dropped once the loss has it; the layer's backward holds the gradients of
  // its input and output and w2's made afresh, less the loss's tensor it freed (more than the loss's
  // backward: two more of the output's size).
  EXPECT_EQ(model.memory(StageLoad{2, 2, 1, 1, Checkpointing::kNone, Offload::kNone}),
            Bytes(4 * kMiB + 64 + 64 + 8 + 64 + 64 + kMiB - 64));
  // A stage of layer 0 alone saves nothing that dies inside it (layer 1 saves its output): nothing to
  // offload.
  EXPECT_EQ(model.offloaded(0, 0).per_sample, 0.0);
  EXPECT_EQ(model.memory(StageLoad{0, 0, 1, 2, Checkpointing::kNone, Offload::kActivations}),
            model.memory(StageLoad{0, 0, 1, 2, Checkpointing::kNone, Offload::kNone}));
}

TEST(ChainPartition, OffloadsActivationsWhenCopiesCostLessThanRecompute) {
  // 12 M: stage 0 = layers 0-1 fits only offloading optimizer state and one of activation offload or
  // checkpointing; layer 0 alone only checkpointed with optimizer state offloaded (11 M + 192, 40 ms a
  // microbatch).
  const OffloadPair fast(DeviceKind::kCuda, Bytes(12 * kMiB), 25);
  const StageModel model(fast.graph, fast.cluster, fast.table, fast.options);
  for (Offload o : {Offload::kNone, Offload::kOptimizerState, Offload::kActivations})
    EXPECT_GT(model.memory(StageLoad{0, 1, 1, 2, Checkpointing::kNone, o}), Bytes(12 * kMiB));
  const auto sol = fast.solve(model);
  ASSERT_TRUE(sol);
  ASSERT_EQ(sol->stages.size(), 2u);
  // Copying 4 M there and back at 25 GB/s (0.34 ms) beats recomputing a 10 ms forward.
  EXPECT_EQ(sol->stages[0].last, 1);
  EXPECT_EQ(sol->stages[0].checkpointing, Checkpointing::kNone);
  EXPECT_EQ(sol->stages[0].offload, Offload::kActivationsAndOptimizerState);
  // Layer 2 alone fits as is (5 M + 200); offloading would only add copies.
  EXPECT_EQ(sol->stages[1].offload, Offload::kNone);
  const double copy = 2 * (4.0 * kMiB) / 25e9;
  EXPECT_NEAR(sol->stages[0].per_microbatch.value(), 3 * (1e10 + 1e6) / 1e12 + copy, 1e-12);

  // At 0.1 GB/s the copies take 84 ms a microbatch: recomputing wins. Checkpointed, layers 0-1 would cost
  // layer 1's extra 4 us a microbatch over layer 0 alone, which comes first then; layers 1-2 (12 M + 456 as
  // is) offload their optimizer state.
  const OffloadPair slow(DeviceKind::kCuda, Bytes(12 * kMiB), 0.1);
  const StageModel slow_model(slow.graph, slow.cluster, slow.table, slow.options);
  const auto slow_sol = slow.solve(slow_model);
  ASSERT_TRUE(slow_sol);
  EXPECT_EQ(slow_sol->stages[0].last, 0);
  EXPECT_EQ(slow_sol->stages[0].checkpointing, Checkpointing::kFull);
  EXPECT_EQ(slow_sol->stages[0].offload, Offload::kOptimizerState);
  EXPECT_NEAR(slow_sol->stages[0].per_microbatch.value(), 4 * 1e10 / 1e12, 1e-12);
  EXPECT_EQ(slow_sol->stages[1].checkpointing, Checkpointing::kNone);
  EXPECT_EQ(slow_sol->stages[1].offload, Offload::kOptimizerState);
}

TEST(ChainPartition, NeverOffloadsFromCpus) {
  // 14 M: a GPU stage 0 = layers 0-1 offloads activations (13 M + 512); a CPU one can only checkpoint.
  const OffloadPair gpu(DeviceKind::kCuda, Bytes(14 * kMiB), 25);
  const StageModel gpu_model(gpu.graph, gpu.cluster, gpu.table, gpu.options);
  const auto g = gpu.solve(gpu_model);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->stages[0].last, 1);
  EXPECT_EQ(g->stages[0].checkpointing, Checkpointing::kNone);
  EXPECT_EQ(g->stages[0].offload, Offload::kActivations);
  const OffloadPair cpu(DeviceKind::kCpu, Bytes(14 * kMiB), 25);
  const StageModel cpu_model(cpu.graph, cpu.cluster, cpu.table, cpu.options);
  const auto c = cpu.solve(cpu_model);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->stages[0].checkpointing, Checkpointing::kFull);
  for (const auto& st : c->stages) EXPECT_EQ(st.offload, Offload::kNone);
  // 12 M needs offload on stage 0 whichever layers it takes (checkpointed, layer 0 alone still needs
  // 13 M + 192): nothing fits on CPUs.
  const OffloadPair tight(DeviceKind::kCpu, Bytes(12 * kMiB), 25);
  const StageModel tight_model(tight.graph, tight.cluster, tight.table, tight.options);
  EXPECT_FALSE(tight.solve(tight_model).has_value());
}

TEST(ChainPartition, EvenShares) {
  EXPECT_EQ(even_shares(10, 3), (std::vector<int>{4, 3, 3}));
  EXPECT_EQ(even_shares(2, 4), (std::vector<int>{1, 1, 0, 0}));
}

TEST(ChainPartition, TooManySlotsIsInfeasible) {
  const Graph g = chain_graph({1e9, 1e9}, {16, 16}, {16, 16});
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("a", 1), make_spec("a", 1)}, make_link(10));
  const CostTable t = table_for(g, c);
  SearchOptions opt;
  opt.global_batch = 4;
  const StageModel model(g, c, t, opt);
  ChainProblem p{&model, block_ends(model, 256), single_device_slots(model, {0, 1, 2}), 1,
                 4,      Schedule::kOneFOneB};
  EXPECT_FALSE(partition_chain(p).has_value());
}

}  // namespace
}  // namespace partita

#include "partita/search/cut_refinement.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <random>

#include "partita/search/simulator.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

struct Fixture {
  Graph graph;
  Cluster cluster;
  CostTable table;
  SearchOptions options;
};

// Twelve nodes of uneven cost and activation size on a 1 and a 2 TFLOP/s device joined by a 10 GB/s link.
Fixture uneven_pair() {
  Fixture f{chain_graph({3e9, 1e9, 5e9, 2e9, 2e9, 8e9, 1e9, 4e9, 6e9, 1e9, 3e9, 2e9},
                        {4096, 256, 8192, 1024, 512, 4096, 256, 2048, 8192, 512, 1024, 64},
                        {1 << 16, 1 << 12, 1 << 18, 1 << 14, 1 << 12, 1 << 18, 1 << 10, 1 << 16, 1 << 18,
                         1 << 12, 1 << 16, 1 << 10},
                        8),
            make_cluster({make_spec("slow", 1), make_spec("fast", 2)}, make_link(10, 5)),
            {},
            {}};
  f.table = table_for(f.graph, f.cluster);
  f.options.global_batch = 8;
  return f;
}

// A pipeline plan over `devices` with the given cut points (a stage ends after each), simulated.
Plan pipeline(const Fixture& f, const std::vector<std::string>& devices, const std::vector<NodeId>& cuts,
              int microbatches) {
  Plan plan;
  plan.graph = graph_identity(f.graph);
  plan.mode = Mode::kTraining;
  plan.strategy = StrategyKind::kPipeline;
  plan.global_batch = f.options.global_batch;
  plan.microbatches = microbatches;
  NodeId first = 0;
  for (size_t i = 0; i < devices.size(); ++i) {
    const NodeId last = i < cuts.size() ? cuts[i] : f.graph.num_nodes() - 1;
    plan.groups.push_back(DeviceGroup{{devices[i]}, {plan.microbatch_size()}, GroupParallelism::kData});
    plan.stages.push_back(Stage{first, last, static_cast<int>(i), Checkpointing::kNone, Offload::kNone});
    first = last + 1;
  }
  plan.prediction = simulate(plan, f.graph, f.cluster, f.table, f.options).prediction;
  return plan;
}

std::vector<bool> everywhere(const Graph& g) {
  return std::vector<bool>(static_cast<size_t>(g.num_nodes()), true);
}

// The best two-stage cut among `allowed` by brute force: its simulated step time (infinity when none fits).
double best_single_cut(const Fixture& f, const std::vector<bool>& allowed, int microbatches) {
  double best = std::numeric_limits<double>::infinity();
  for (NodeId c = 0; c + 1 < f.graph.num_nodes(); ++c) {
    if (!allowed[static_cast<size_t>(c)]) continue;
    Plan p = pipeline(f, {"d0", "d1"}, {c}, microbatches);
    const Simulation sim = simulate(p, f.graph, f.cluster, f.table, f.options);
    if (sim.fits_memory) best = std::min(best, sim.step_time.value());
  }
  return best;
}

TEST(CutRefinement, ReachesTheBestCutOfATwoStagePipelineFromEitherEnd) {
  const Fixture f = uneven_pair();
  for (int m : {1, 2, 4, 8}) {
    const double best = best_single_cut(f, everywhere(f.graph), m);
    for (NodeId start : {0, 5, 10}) {
      const Plan from = pipeline(f, {"d0", "d1"}, {start}, m);
      const CutRefinement r =
          refine_cuts(from, f.graph, f.cluster, f.table, f.options, everywhere(f.graph), 1000);
      EXPECT_NEAR(r.plan.prediction.step_time.value(), best, best * 1e-12) << "m " << m << " from " << start;
      EXPECT_LE(r.plan.prediction.step_time.value(), from.prediction.step_time.value());
      if (r.plan.stages[0].last != start) {
        EXPECT_GT(r.moves, 0);
      }
    }
  }
}

TEST(CutRefinement, ThePredictionIsTheRefinedPlansOwnSimulationAndNeverWorse) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> flops(1e8, 1e10);
  std::uniform_int_distribution<int64_t> acts(16, 8192);
  for (int trial = 0; trial < 25; ++trial) {
    const int n = 6 + trial % 10;
    std::vector<double> fl;
    std::vector<int64_t> ac, pa;
    for (int i = 0; i < n; ++i) fl.push_back(flops(rng)), ac.push_back(acts(rng)), pa.push_back(acts(rng));
    Fixture f{chain_graph(fl, ac, pa, 8),
              make_cluster({make_spec("a", 1), make_spec("b", 3), make_spec("c", 2)}, make_link(5, 10)),
              {},
              {}};
    f.table = table_for(f.graph, f.cluster);
    f.options.global_batch = 8;
    f.options.objective = trial % 3 == 0 ? Objective::kEnergy : Objective::kTime;
    std::uniform_int_distribution<NodeId> first_cut(0, n - 3);
    const NodeId c0 = first_cut(rng);
    const NodeId c1 = std::uniform_int_distribution<NodeId>(c0 + 1, n - 2)(rng);
    const Plan from = pipeline(f, {"d0", "d1", "d2"}, {c0, c1}, 1 << (trial % 4));
    const CutRefinement r = refine_cuts(from, f.graph, f.cluster, f.table, f.options, everywhere(f.graph));
    EXPECT_LE(r.simulations, kCutRefinementSimulations);
    EXPECT_NO_THROW(r.plan.check_against(f.graph));
    const Simulation again = simulate(r.plan, f.graph, f.cluster, f.table, f.options);
    EXPECT_DOUBLE_EQ(again.step_time.value(), r.plan.prediction.step_time.value()) << "trial " << trial;
    EXPECT_DOUBLE_EQ(again.prediction.energy.value(), r.plan.prediction.energy.value()) << "trial " << trial;
    if (f.options.objective == Objective::kEnergy) {
      EXPECT_LE(r.plan.prediction.energy.value(), from.prediction.energy.value()) << "trial " << trial;
    } else {
      EXPECT_LE(r.plan.prediction.step_time.value(), from.prediction.step_time.value()) << "trial " << trial;
    }
  }
}

TEST(CutRefinement, CutsStayWhereTheyAreAllowed) {
  const Fixture f = uneven_pair();
  std::vector<bool> odd(static_cast<size_t>(f.graph.num_nodes()), false);
  for (size_t n = 1; n < odd.size(); n += 2) odd[n] = true;
  for (NodeId start : {1, 5, 9}) {
    const Plan from = pipeline(f, {"d0", "d1"}, {start}, 4);
    const CutRefinement r = refine_cuts(from, f.graph, f.cluster, f.table, f.options, odd, 1000);
    EXPECT_EQ(r.plan.stages[0].last % 2, 1) << "from " << start;
    const double best = best_single_cut(f, odd, 4);
    EXPECT_NEAR(r.plan.prediction.step_time.value(), best, best * 1e-12) << "from " << start;
  }
  // The unrestricted optimum here is at an even node: the restriction mattered.
  EXPECT_LT(best_single_cut(f, everywhere(f.graph), 4), best_single_cut(f, odd, 4));
}

TEST(CutRefinement, AMoveThatBreaksMemoryIsNotTaken) {
  Fixture f = uneven_pair();
  const Plan from = pipeline(f, {"d0", "d1"}, {0}, 4);
  const CutRefinement free =
      refine_cuts(from, f.graph, f.cluster, f.table, f.options, everywhere(f.graph), 1000);
  const NodeId unconstrained = free.plan.stages[0].last;
  ASSERT_GT(unconstrained, 0);
  // Give d0 just less memory than it needs at the unconstrained optimum: cuts from there on no longer fit.
  f.cluster.devices[0].spec.memory = Bytes(free.plan.prediction.devices[0].peak_memory.value() - 1);
  const Plan start = pipeline(f, {"d0", "d1"}, {0}, 4);
  ASSERT_TRUE(simulate(start, f.graph, f.cluster, f.table, f.options).fits_memory);
  const CutRefinement capped =
      refine_cuts(start, f.graph, f.cluster, f.table, f.options, everywhere(f.graph), 1000);
  EXPECT_LT(capped.plan.stages[0].last, unconstrained);
  EXPECT_TRUE(simulate(capped.plan, f.graph, f.cluster, f.table, f.options).fits_memory);
  const double best = best_single_cut(f, everywhere(f.graph), 4);  // with d0's smaller memory
  EXPECT_NEAR(capped.plan.prediction.step_time.value(), best, best * 1e-12);
  EXPECT_GT(capped.plan.prediction.step_time.value(), free.plan.prediction.step_time.value());
}

TEST(CutRefinement, StopsAtItsSimulationBudget) {
  const Fixture f = uneven_pair();
  const Plan from = pipeline(f, {"d0", "d1"}, {0}, 4);
  for (int budget : {0, 1, 3}) {
    const CutRefinement r =
        refine_cuts(from, f.graph, f.cluster, f.table, f.options, everywhere(f.graph), budget);
    EXPECT_LE(r.simulations, budget);
  }
  EXPECT_EQ(
      refine_cuts(from, f.graph, f.cluster, f.table, f.options, everywhere(f.graph), 0).plan.stages[0].last,
      0);
}

TEST(CutRefinement, LeavesOneStageAndBranchPlansAlone) {
  const Fixture f = uneven_pair();
  const Plan one = pipeline(f, {"d1"}, {}, 1);
  EXPECT_FALSE(refinable(one));
  EXPECT_EQ(refine_cuts(one, f.graph, f.cluster, f.table, f.options, everywhere(f.graph)).simulations, 0);
  Plan branch = pipeline(f, {"d0", "d1"}, {5}, 1);
  branch.strategy = StrategyKind::kBranch;
  for (Stage& st : branch.stages) {
    for (NodeId n = st.first; n <= st.last; ++n) st.nodes.push_back(n);
  }
  EXPECT_FALSE(refinable(branch));
  EXPECT_TRUE(refinable(pipeline(f, {"d0", "d1"}, {5}, 1)));
}

}  // namespace
}  // namespace partita

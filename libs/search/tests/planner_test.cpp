#include "partita/search/planner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <set>

#include "partita/core/error.h"
#include "partita/graph/analysis.h"
#include "partita/search/model_spec.h"
#include "partita/search/plan_json.h"
#include "partita/search/simulator.h"
#include "partita/search/stage_model.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

struct Gpt24 {
  Graph graph;
  Cluster cluster;
  CostTable table;
};

// 2 fast + 2 half-speed GPUs on NVLink-class links, a 24-layer GPT at batch 1 (times scale per sample).
Gpt24 gpt24_on_unequal_gpus() {
  Gpt24 s{build_model_graph(
              load_model_spec(std::string(PARTITA_SOURCE_DIR) + "/config/models/gpt-24layer.yaml"), 1),
          make_cluster({make_spec("fast", 100, 80, 700, 100), make_spec("fast", 100, 80, 700, 100),
                        make_spec("half", 50, 80, 400, 60), make_spec("half", 50, 80, 400, 60)},
                       make_link(300, 5)),
          {}};
  s.table = table_for(s.graph, s.cluster);
  return s;
}

SearchOptions training(int batch) {
  SearchOptions o;
  o.mode = Mode::kTraining;
  o.global_batch = batch;
  o.max_blocks = 64;
  return o;
}

TEST(Planner, BeatsEvenAndNearsTheIdealOnUnequalGpus) {
  const Gpt24 s = gpt24_on_unequal_gpus();
  const SearchOptions opt = training(32);
  const PlanOutcome best = make_plan(s.graph, s.cluster, s.table, opt);
  ASSERT_TRUE(best.plan) << best.error;
  SearchOptions even_opt = opt;
  even_opt.strategy = StrategyKind::kEven;
  const PlanOutcome even = make_plan(s.graph, s.cluster, s.table, even_opt);
  ASSERT_TRUE(even.plan) << even.error;
  const double ours = best.plan->prediction.samples_per_second;
  EXPECT_GE(ours, 1.3 * even.plan->prediction.samples_per_second)
      << best.plan->to_string() << even.plan->to_string();
  // Comm-free ideal: the sum of every device's samples per second.
  const StageModel model(s.graph, s.cluster, s.table, opt);
  double ideal = 0;
  for (int d = 0; d < model.num_devices(); ++d) ideal += 1.0 / model.sample_time(model.spec_of(d)).value();
  EXPECT_GE(ours, 0.9 * ideal) << best.plan->to_string();
  EXPECT_LE(ours, ideal * (1 + 1e-9));
  // The returned prediction is what the oracle recomputes.
  const Plan again = evaluate(*best.plan, s.graph, s.cluster, s.table, opt);
  EXPECT_EQ(plan_to_json(again).dump(), plan_to_json(*best.plan).dump());
}

TEST(Planner, CandidatesAreDistinctLayouts) {
  const Gpt24 s = gpt24_on_unequal_gpus();
  const PlanOutcome out = make_plan(s.graph, s.cluster, s.table, training(32));
  ASSERT_TRUE(out.plan) << out.error;
  std::set<std::string> seen;
  bool pipeline_kept = false;  // a layout of one-device stages, offered under its pipeline label
  for (const Plan& p : out.candidates) {
    Json j = plan_to_json(p);
    for (const char* key : {"strategy", "predicted_step_ms", "predicted_peak_bytes", "predicted_joules",
                            "prediction", "source", "unused_devices"}) {
      j.erase(key);
    }
    EXPECT_TRUE(seen.insert(j.dump()).second) << "a layout listed twice:\n" << p.to_string();
    pipeline_kept = pipeline_kept || (p.strategy == StrategyKind::kPipeline &&
                                      std::all_of(p.groups.begin(), p.groups.end(), [](const DeviceGroup& g) {
                                        return g.devices.size() == 1;
                                      }));
  }
  // The hybrid strategy proposes one-device groups too (a pipeline): the generators do overlap here.
  SearchOptions hybrid = training(32);
  hybrid.strategy = StrategyKind::kHybrid;
  const auto raw = generate_candidates(s.graph, s.cluster, s.table, hybrid);
  EXPECT_TRUE(std::any_of(raw.begin(), raw.end(), [](const Plan& p) {
    return std::all_of(p.groups.begin(), p.groups.end(),
                       [](const DeviceGroup& g) { return g.devices.size() == 1; });
  })) << "the test needs overlapping generators to mean anything";
  EXPECT_TRUE(pipeline_kept) << "dropping the copy must keep the layout itself";
}

// --all-devices: a model whose all-reduce costs more than a second device saves runs on one device, unless
// the caller needs every device used (one process per device).
TEST(Planner, EveryDeviceKeepsOnlyPlansThatUseThemAll) {
  const Graph g = chain_graph({1e6, 1e6}, {16, 16}, {1 << 20, 1 << 20}, 8);
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("a", 1)}, make_link(0.1, 100));
  const CostTable t = table_for(g, c);
  SearchOptions o = training(8);
  o.strategy = StrategyKind::kData;
  const PlanOutcome free = make_plan(g, c, t, o);
  ASSERT_TRUE(free.plan) << free.error;
  ASSERT_EQ(free.plan->used_devices().size(), 1u) << "the test needs a case where one device wins";
  o.every_device = true;
  const PlanOutcome all = make_plan(g, c, t, o);
  ASSERT_TRUE(all.plan) << all.error;
  EXPECT_EQ(all.plan->used_devices().size(), 2u);
  for (const Plan& p : all.candidates) EXPECT_EQ(p.used_devices().size(), 2u);
  EXPECT_GT(all.plan->prediction.step_time, free.plan->prediction.step_time);
  // A pipeline of a two-node chain has at most two stages: it cannot use three devices.
  const Cluster three = make_cluster({make_spec("a", 1), make_spec("a", 1), make_spec("a", 1)}, make_link(1));
  o.strategy = StrategyKind::kPipeline;  // two nodes: at most two stages
  const PlanOutcome none = make_plan(g, three, table_for(g, three), o);
  EXPECT_FALSE(none.plan);
  EXPECT_NE(none.error.find("no candidate plan uses all 3 devices"), std::string::npos) << none.error;
  EXPECT_EQ(none.error.find("batch kept whole"), std::string::npos) << none.error;
  // Data parallelism on both devices of a model that must see its whole batch: the error says why.
  o.strategy = StrategyKind::kData;
  o.batch_splittable = false;
  const PlanOutcome whole = make_plan(g, c, t, o);
  EXPECT_FALSE(whole.plan);
  EXPECT_NE(whole.error.find("uses all 2 devices and fits with the batch kept whole"), std::string::npos)
      << whole.error;
  // A batch of one sample cannot be shared by two replicas: the error says so.
  o.batch_splittable = true;
  o.global_batch = 1;
  const PlanOutcome single = make_plan(g, c, t, o);
  EXPECT_FALSE(single.plan);
  EXPECT_NE(single.error.find("(a batch of 1 gives 2 data-parallel replicas less than a sample each)"),
            std::string::npos)
      << single.error;
}

// Planned for the processes of `partita launch`, candidates are ranked with their messages between processes:
// a link between processes far slower than the in-process one keeps the work on one device.
TEST(Planner, PlanningForLaunchedProcessesCountsTheirMessages) {
  const Graph g = chain_graph({1e10, 1e10}, {16, 16}, {1 << 20, 1 << 20}, 8);
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("a", 1)}, make_link(1000, 0));
  const CostTable t = table_for(g, c);
  SearchOptions o = training(8);
  o.strategy = StrategyKind::kData;
  const PlanOutcome one = make_plan(g, c, t, o);
  ASSERT_TRUE(one.plan) << one.error;
  ASSERT_EQ(one.plan->used_devices().size(), 2u)
      << "the test needs a case where both devices win in one process";
  EXPECT_EQ(one.plan->processes, ProcessLayout::kOne);
  o.processes = ProcessLayout::kLaunch;
  const LinkSpec slow{"slow between processes", Seconds(0.5), BytesPerSecond(1e6), "test"};
  o.process_links = ProcessLinks{slow, slow};
  const PlanOutcome launched = make_plan(g, c, t, o);
  ASSERT_TRUE(launched.plan) << launched.error;
  EXPECT_EQ(launched.plan->used_devices().size(), 1u);
  for (const Plan& p : launched.candidates) {
    EXPECT_EQ(p.processes, ProcessLayout::kLaunch);
    EXPECT_NEAR(p.prediction.step_time.value(), simulate(p, g, c, t, o).step_time.value(), 1e-12);
  }
  o.process_links.reset();
  EXPECT_THROW((void)make_plan(g, c, t, o), Error);
}

// The strategies' own estimates see the links between processes too, not the simulator alone: over a slow
// message link a launched pipeline's best microbatch count (2 here, 3.48 s) is one that the in-process
// estimates rank below their best few (32, 16, 8, 4), which alone are simulated: costed in one process, the
// planner chose 4 microbatches (3.6 s).
TEST(Planner, LaunchedPipelinesChooseTheirMicrobatchesWithTheLinksBetweenProcesses) {
  const Graph g = chain_graph({1e10, 1e10, 1e10, 1e10}, {16, 16, 16, 16}, {16, 16, 16, 16}, 32);
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("a", 1)}, make_link(1000, 0));
  const CostTable t = table_for(g, c);
  SearchOptions o = training(32);
  o.strategy = StrategyKind::kPipeline;
  o.processes = ProcessLayout::kLaunch;
  const LinkSpec slow{"slow between processes", Seconds(0.3), BytesPerSecond(1e12), "test"};
  o.process_links = ProcessLinks{slow, slow};
  const PlanOutcome planned = make_plan(g, c, t, o);
  ASSERT_TRUE(planned.plan) << planned.error;
  // Every microbatch count, each planned and simulated as launched.
  double best = std::numeric_limits<double>::infinity();
  int best_m = 0;
  for (int m : {1, 2, 4, 8, 16, 32}) {
    SearchOptions fixed = o;
    fixed.microbatches = m;
    const PlanOutcome out = make_plan(g, c, t, fixed);
    ASSERT_TRUE(out.plan) << out.error;
    if (out.plan->prediction.step_time.value() < best)
      best = out.plan->prediction.step_time.value(), best_m = m;
  }
  EXPECT_LE(planned.plan->prediction.step_time.value(), best * 1.0001)
      << "chose " << planned.plan->to_string() << "; " << best_m << " microbatches take " << best << " s";
  // In one process the same search prefers more microbatches than that: the case needs the in-process
  // ranking to differ.
  SearchOptions one = o;
  one.processes = ProcessLayout::kOne;
  const PlanOutcome in_one = make_plan(g, c, t, one);
  ASSERT_TRUE(in_one.plan) << in_one.error;
  EXPECT_GT(in_one.plan->microbatches, best_m)
      << "the test needs a case where the processes change the choice";
}

// A batch norm of [batch, channels] in train mode outputs its bias alone on one sample: no candidate may give
// a device a microbatch share of one sample when min_batch_share is 2.
TEST(Planner, NoCandidateGoesBelowTheSmallestShareAllowed) {
  const Gpt24 s = gpt24_on_unequal_gpus();
  SearchOptions o = training(4);
  const PlanOutcome free = make_plan(s.graph, s.cluster, s.table, o);
  ASSERT_TRUE(free.plan) << free.error;
  ASSERT_TRUE(std::any_of(free.candidates.begin(), free.candidates.end(), [](const Plan& p) {
    return p.smallest_share() == 1;
  })) << "the test needs a candidate with a one-sample share";
  o.min_batch_share = 2;
  const PlanOutcome two = make_plan(s.graph, s.cluster, s.table, o);
  ASSERT_TRUE(two.plan) << two.error;
  for (const Plan& p : two.candidates) EXPECT_GE(p.smallest_share(), 2) << p.to_string();
}

TEST(Planner, AModelThatMustSeeItsWholeBatchKeepsItWhole) {
  const Gpt24 s = gpt24_on_unequal_gpus();
  SearchOptions o = training(16);
  const PlanOutcome free = make_plan(s.graph, s.cluster, s.table, o);
  ASSERT_TRUE(free.plan) << free.error;
  ASSERT_TRUE(free.plan->splits_batch()) << "the test needs a case where splitting the batch wins";
  o.batch_splittable = false;
  const PlanOutcome whole = make_plan(s.graph, s.cluster, s.table, o);
  ASSERT_TRUE(whole.plan) << whole.error;
  bool a_pipeline = false;
  for (const Plan& p : whole.candidates) {
    EXPECT_FALSE(p.splits_batch()) << p.to_string();
    EXPECT_EQ(p.microbatches, 1);
    a_pipeline = a_pipeline || p.stages.size() > 1;
  }
  EXPECT_TRUE(a_pipeline) << "a pipeline of one microbatch keeps the batch whole and should remain";
  // Asking for a split of such a model is refused by name.
  o.microbatches = 4;
  EXPECT_THROW(make_plan(s.graph, s.cluster, s.table, o), Error);
}

TEST(Planner, IsDeterministic) {
  const Gpt24 s = gpt24_on_unequal_gpus();
  const auto a = make_plan(s.graph, s.cluster, s.table, training(16));
  const auto b = make_plan(s.graph, s.cluster, s.table, training(16));
  ASSERT_TRUE(a.plan && b.plan);
  EXPECT_EQ(plan_to_json(*a.plan).dump(2), plan_to_json(*b.plan).dump(2));
}

TEST(Planner, EveryDeviceIsUsedOrExplained) {
  const Gpt24 s = gpt24_on_unequal_gpus();
  for (StrategyKind k : {StrategyKind::kAuto, StrategyKind::kData, StrategyKind::kPipeline,
                         StrategyKind::kHybrid, StrategyKind::kEven}) {
    SearchOptions o = training(16);
    o.strategy = k;
    const auto out = make_plan(s.graph, s.cluster, s.table, o);
    ASSERT_TRUE(out.plan) << strategy_name(k) << ": " << out.error;
    for (const Plan& p : out.candidates) {
      std::set<std::string> named;
      for (const auto& d : p.used_devices()) named.insert(d);
      for (const auto& u : p.unused_devices) {
        EXPECT_FALSE(u.reason.empty());
        named.insert(u.device);
      }
      EXPECT_EQ(named.size(), s.cluster.devices.size()) << p.to_string();
    }
  }
}

TEST(Planner, MemoryLimitBelowNeedFitsOrNamesTheMinimum) {
  const Gpt24 s = gpt24_on_unequal_gpus();
  for (int64_t limit_mib : {4096, 1024, 256}) {
    SearchOptions o = training(16);
    o.memory_limit = Bytes(limit_mib << 20);
    const auto out = make_plan(s.graph, s.cluster, s.table, o);
    if (out.plan) {
      // Never returns or ranks a plan that breaks the limit.
      for (const Plan& p : out.candidates) {
        for (const auto& d : p.prediction.devices) EXPECT_LE(d.peak_memory, *o.memory_limit) << p.to_string();
      }
      continue;
    }
    ASSERT_TRUE(out.min_memory) << out.error;
    EXPECT_GT(*out.min_memory, *o.memory_limit);
    EXPECT_NE(out.error.find("smallest per-device memory"), std::string::npos);
    o.memory_limit = out.min_memory;
    const auto at_min = make_plan(s.graph, s.cluster, s.table, o);
    EXPECT_TRUE(at_min.plan) << "the reported minimum " << out.min_memory->value() << " does not fit";
  }
}

TEST(Planner, ObjectivesPickFromTheSameCandidates) {
  const Gpt24 s = gpt24_on_unequal_gpus();
  SearchOptions o = training(16);
  const auto fast = make_plan(s.graph, s.cluster, s.table, o);
  o.objective = Objective::kEnergy;
  const auto frugal = make_plan(s.graph, s.cluster, s.table, o);
  ASSERT_TRUE(fast.plan && frugal.plan);
  EXPECT_LE(fast.plan->prediction.step_time, frugal.plan->prediction.step_time);
  EXPECT_LE(frugal.plan->prediction.energy, fast.plan->prediction.energy);
  EXPECT_FALSE(fast.pareto.empty());
}

// offload_pair_graph (see test_support.h) on two devices, four samples a step, every strategy.
PlanOutcome plan_offload_pair(DeviceKind kind, int64_t limit_mib, double host_gbps) {
  const Graph g = offload_pair_graph();
  const Cluster c = uniform_cluster(2, kind);
  SearchOptions o = training(4);
  o.memory_limit = Bytes(limit_mib << 20);
  o.host_bandwidth = BytesPerSecond(host_gbps * 1e9);
  return make_plan(g, c, table_for(g, c), o);
}

bool any_stage(const Plan& p, bool (*pred)(const Stage&)) {
  return std::any_of(p.stages.begin(), p.stages.end(), pred);
}

TEST(Planner, OffloadsActivationsOrCheckpointsWhenNothingLessFits) {
  // 12 MiB: neither device holds the whole model (13 MiB at least), and a first pipeline stage of layers 0-1
  // fits only with optimizer state offloaded and its activations either offloaded or recomputed.
  const auto fast = plan_offload_pair(DeviceKind::kCuda, 12, 25);
  ASSERT_TRUE(fast.plan) << fast.error;
  EXPECT_TRUE(any_stage(*fast.plan, [](const Stage& s) {
    return s.offload == Offload::kActivationsAndOptimizerState && s.checkpointing == Checkpointing::kNone;
  })) << fast.plan->to_string();
  // A slow host link makes the copies dearer than recomputing the forward.
  const auto slow = plan_offload_pair(DeviceKind::kCuda, 12, 0.1);
  ASSERT_TRUE(slow.plan) << slow.error;
  EXPECT_TRUE(any_stage(*slow.plan, [](const Stage& s) { return s.checkpointing == Checkpointing::kFull; }))
      << slow.plan->to_string();
  EXPECT_FALSE(any_stage(*slow.plan, [](const Stage& s) { return offloads_activations(s.offload); }))
      << slow.plan->to_string();
  for (const PlanOutcome* out : {&fast, &slow}) {
    for (const auto& d : out->plan->prediction.devices) EXPECT_LE(d.peak_memory, Bytes(12 << 20));
  }
}

TEST(Planner, NeverOffloadsFromCpus) {
  // The limit that GPUs meet with offload is out of reach for CPUs: refused, with the smallest that works.
  const auto tight = plan_offload_pair(DeviceKind::kCpu, 12, 25);
  EXPECT_FALSE(tight.plan);
  EXPECT_NE(tight.error.find("no plan fits in memory"), std::string::npos) << tight.error;
  ASSERT_TRUE(tight.min_memory);
  EXPECT_GT(*tight.min_memory, Bytes(12 << 20));
  // Where CPUs fit with checkpointing, no candidate offloads.
  const auto roomy = plan_offload_pair(DeviceKind::kCpu, 14, 25);
  ASSERT_TRUE(roomy.plan) << roomy.error;
  for (const Plan& p : roomy.candidates)
    EXPECT_FALSE(any_stage(p, [](const Stage& s) { return s.offload != Offload::kNone; })) << p.to_string();
}

// Hybrid candidates cut only where the values crossing can be split by the batch (graph/analysis.h's
// hybrid_cuts): six linears in a chain with an aten::size (node 2) reading the batch size as a number that
// the fifth linear (node 5) takes, so no stage may end at nodes 2, 3 or 4, though the same bytes cross every
// cut.
TEST(Planner, HybridPlansCutOnlyWhereTheEngineCanSplitTheBatch) {
  Graph h;
  ValueId x = h.add_input("x");
  h.value(x).tensors = {TensorMeta{{8, 16}, DType::kFloat32}};
  ValueId batch = -1;
  for (int i = 0; i < 6; ++i) {
    const ValueId w = h.add_parameter("w" + std::to_string(i), true);
    h.value(w).tensors = {TensorMeta{{1024}, DType::kFloat32}};
    const ValueId y = h.add_value(ValueKind::kTensor, "y" + std::to_string(i));
    h.value(y).tensors = {TensorMeta{{8, 256}, DType::kFloat32}};
    std::vector<ValueId> inputs{x, w};
    if (i == 4) inputs.push_back(batch);
    const NodeId n = h.add_node("aten::linear", inputs, {y});
    h.node(n).cost = OpCost{Flops(1e10 * 8), Bytes(0), Bytes(0), CostStatus::kEstimated};
    x = y;
    if (i == 1) {
      batch = h.add_value(ValueKind::kScalar, "batch");
      h.add_node("aten::size", {y, h.add_constant(ValueKind::kScalar, "0")}, {batch});
    }
  }
  h.set_outputs({x});
  const std::vector<bool> cuts = hybrid_cuts(h);
  ASSERT_EQ(cuts, (std::vector<bool>{true, true, false, false, false, true, true}));
  const Cluster c =
      make_cluster({make_spec("a", 1), make_spec("a", 1), make_spec("a", 1)}, make_link(1e21, 0));
  const CostTable t = table_for(h, c);
  SearchOptions opt;
  opt.global_batch = 8;
  opt.strategy = StrategyKind::kHybrid;
  int multi_stage = 0;
  for (const Plan& p : generate_candidates(h, c, t, opt)) {
    for (size_t s = 0; s + 1 < p.stages.size(); ++s)
      EXPECT_TRUE(cuts[static_cast<size_t>(p.stages[s].last)]) << "a stage ends at node " << p.stages[s].last;
    multi_stage += p.stages.size() > 1 ? 1 : 0;
  }
  EXPECT_GT(multi_stage, 0) << "no hybrid candidate has two stages: the test checks nothing";
}

}  // namespace
}  // namespace partita

namespace partita {
namespace {

// The chain partitioner chooses cuts by its closed-form bottleneck; the planner then moves them while the
// simulator (its final scorer) says the step gets faster: the chosen pipeline is no slower than the
// partitioner's and no single cut moved by one node is faster in simulation.
TEST(Planner, PipelineCutsAreLocallyBestInSimulation) {
  const Graph g = chain_graph({3e9, 1e9, 5e9, 2e9, 2e9, 8e9, 1e9, 4e9, 6e9, 1e9, 3e9, 2e9},
                              {4096, 256, 8192, 1024, 512, 4096, 256, 2048, 8192, 512, 1024, 64},
                              std::vector<int64_t>(12, 1 << 14), 8);
  const Cluster c =
      make_cluster({make_spec("slow", 1), make_spec("fast", 2), make_spec("fast", 2)}, make_link(10, 5));
  const CostTable t = table_for(g, c);
  for (int m : {1, 2, 4, 8}) {
    SearchOptions o = training(8);
    o.strategy = StrategyKind::kPipeline;
    o.microbatches = m;
    SearchOptions unrefined = o;
    unrefined.refine_cuts = false;
    const PlanOutcome refined = make_plan(g, c, t, o), partitioned = make_plan(g, c, t, unrefined);
    ASSERT_TRUE(refined.plan && partitioned.plan) << refined.error << partitioned.error;
    const Plan& p = *refined.plan;
    EXPECT_LE(p.prediction.step_time.value(), partitioned.plan->prediction.step_time.value()) << "m " << m;
    EXPECT_DOUBLE_EQ(simulate(p, g, c, t, o).step_time.value(), p.prediction.step_time.value());
    for (size_t s = 0; s + 1 < p.stages.size(); ++s) {
      for (int delta : {-1, +1}) {
        Plan moved = p;
        moved.stages[s].last += delta;
        moved.stages[s + 1].first += delta;
        if (moved.stages[s].last < moved.stages[s].first ||
            moved.stages[s + 1].first > moved.stages[s + 1].last)
          continue;
        EXPECT_GE(simulate(moved, g, c, t, o).step_time.value(), p.prediction.step_time.value())
            << "m " << m << " cut " << s << " moved by " << delta;
      }
    }
    // On this instance the partitioner's cuts are beaten at 1 and 2 microbatches (by 2.4% and 4.5%).
    if (m <= 2) {
      EXPECT_LT(p.prediction.step_time.value(), partitioned.plan->prediction.step_time.value()) << "m " << m;
    }
  }
}

}  // namespace
}  // namespace partita

#include "partita/search/simulator.h"

#include <gtest/gtest.h>

#include <map>

#include "partita/core/error.h"
#include "partita/cost/comm.h"
#include "partita/search/blocks.h"
#include "partita/search/chain_partition.h"
#include "partita/search/chain_plan.h"
#include "partita/search/device_slowdown.h"
#include "partita/search/process_layout.h"
#include "partita/search/stage_model.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

struct Fixture {
  Graph graph;
  Cluster cluster;
  CostTable table;
};

// p identical devices, one node per stage, free communication.
Fixture identical(int p) {
  Fixture s{
      chain_graph(std::vector<double>(static_cast<size_t>(p), 1e10),
                  std::vector<int64_t>(static_cast<size_t>(p), 256),
                  std::vector<int64_t>(static_cast<size_t>(p), 1024)),
      make_cluster(std::vector<DeviceSpec>(static_cast<size_t>(p), make_spec("gpu", 1)), make_link(1e21, 0)),
      {}};
  s.table = table_for(s.graph, s.cluster);
  return s;
}

Plan pipeline_plan(const Fixture& s, int p, int m, int batch, Schedule schedule) {
  Plan plan;
  plan.graph = graph_identity(s.graph);
  plan.mode = Mode::kTraining;
  plan.strategy = StrategyKind::kPipeline;
  plan.schedule = schedule;
  plan.global_batch = batch;
  plan.microbatches = m;
  for (int i = 0; i < p; ++i) {
    plan.groups.push_back(DeviceGroup{{"d" + std::to_string(i)}, {batch / m}, GroupParallelism::kData});
    plan.stages.push_back(Stage{i, i, i, Checkpointing::kNone, Offload::kNone});
  }
  return plan;
}

TEST(Simulator, ReproducesTheGPipeBubbleExactly) {
  for (int p : {2, 3, 4, 6}) {
    for (int m : {1, 2, 4, 8, 16}) {
      const Fixture s = identical(p);
      for (Schedule sched : {Schedule::kGPipe, Schedule::kOneFOneB}) {
        const Simulation sim = simulate(pipeline_plan(s, p, m, 16 * m, sched), s.graph, s.cluster, s.table);
        const double per_mb = (s.table.times[0][0].forward + s.table.times[0][0].backward).value() * 16;
        const double bubble = 1.0 - m * per_mb / sim.step_time.value();
        EXPECT_NEAR(bubble, static_cast<double>(p - 1) / (m + p - 1), 1e-12) << "p " << p << " m " << m;
      }
    }
  }
}

TEST(Simulator, OneFOneBKeepsStagesInFlightWhereGPipeKeepsAllMicrobatches) {
  const int p = 4, m = 12, batch = 48;
  const Fixture s = identical(p);
  SearchOptions opt;
  opt.global_batch = batch;
  const StageModel model(s.graph, s.cluster, s.table, opt);
  const double act = model.activation(0, 0).per_sample * (batch / m);
  const Bytes base = model.memory(StageLoad{0, 0, batch / m, 0, Checkpointing::kNone, Offload::kNone});
  const auto gpipe = simulate(pipeline_plan(s, p, m, batch, Schedule::kGPipe), s.graph, s.cluster, s.table);
  const auto one_f =
      simulate(pipeline_plan(s, p, m, batch, Schedule::kOneFOneB), s.graph, s.cluster, s.table);
  // GPipe peaks in the stage's first backward, all m microbatches kept, where its weight's gradient is the
  // one the step keeps (base has a later backward's, which makes that gradient afresh beside it).
  const double fresh = static_cast<double>(model.trainable_bytes(0, 0).value());
  EXPECT_NEAR(static_cast<double>((gpipe.prediction.devices[0].peak_memory - base).value()), m * act - fresh,
              1.0);
  EXPECT_NEAR(static_cast<double>((one_f.prediction.devices[0].peak_memory - base).value()), p * act, 1.0);
  // Last stage: one microbatch in flight under 1F1B.
  EXPECT_NEAR(
      static_cast<double>((one_f.prediction.devices[3].peak_memory -
                           model.memory(StageLoad{3, 3, batch / m, 0, Checkpointing::kNone, Offload::kNone}))
                              .value()),
      model.activation(3, 3).per_sample * (batch / m), 1.0);
  // The simulated peak is what the search's memory model predicts.
  for (int st = 0; st < p; ++st) {
    const Bytes want =
        model.memory(StageLoad{st, st, batch / m, std::min(p - st, m), Checkpointing::kNone, Offload::kNone});
    EXPECT_NEAR(static_cast<double>(one_f.prediction.devices[static_cast<size_t>(st)].peak_memory.value()),
                static_cast<double>(want.value()), 2.0);
  }
}

// Stages of several nodes with several microbatches: each device's first backward of the step runs before
// any gradient exists, with the most microbatches in flight; the later ones beside every gradient. The
// simulated peak is the memory model's for both schedules, and GPipe's first stage (all four microbatches
// kept at its first backward, whose peak comes before the first weight's large gradient is made) needs less
// than when every gradient counted for the whole step.
TEST(Simulator, AStagesFirstBackwardHoldsOnlyTheGradientsMadeByThen) {
  Fixture s{chain_graph(std::vector<double>(6, 1e10), {2000, 256, 256, 2000, 256, 256},
                        {50000, 1024, 1024, 50000, 1024, 1024}),
            make_cluster(std::vector<DeviceSpec>(2, make_spec("gpu", 1)), make_link(1e21, 0)),
            {}};
  s.table = table_for(s.graph, s.cluster);
  const int m = 4, batch = 8;
  SearchOptions opt;
  opt.mode = Mode::kTraining;
  opt.global_batch = batch;
  const StageModel model(s.graph, s.cluster, s.table, opt);
  for (Schedule schedule : {Schedule::kGPipe, Schedule::kOneFOneB}) {
    Plan plan = pipeline_plan(s, 2, m, batch, schedule);
    plan.stages[0].last = 2;
    plan.stages[1].first = 3;
    plan.stages[1].last = 5;
    const Simulation sim = simulate(plan, s.graph, s.cluster, s.table);
    for (int st = 0; st < 2; ++st) {
      const int in_flight = schedule == Schedule::kGPipe ? m : std::min(2 - st, m);
      StageLoad load{3 * st,         3 * st + 2,       batch / m, in_flight, Checkpointing::kNone,
                     Offload::kNone, WeightHome::kOwn, st,        m};
      EXPECT_NEAR(static_cast<double>(sim.prediction.devices[static_cast<size_t>(st)].peak_memory.value()),
                  static_cast<double>(model.memory(load).value()), 2.0)
          << schedule_name(schedule) << " stage " << st;
      if (schedule == Schedule::kGPipe && st == 0) {
        load.microbatches = 0;  // every gradient for the whole step
        EXPECT_LT(sim.prediction.devices[0].peak_memory, model.memory(load) - Bytes(1000));
      }
    }
  }
}

// Inference: a stage after the first also holds the next microbatch's input waiting (the engine's senders
// wait while one does), and the last stage the outputs of the microbatches before, until they are gathered.
TEST(Simulator, InferenceStagesHoldOneWaitingInputAndTheLastTheEarlierOutputs) {
  const int p = 4, m = 12, batch = 48, mb = batch / m;
  const Fixture s = identical(p);
  SearchOptions opt;
  opt.global_batch = batch;
  opt.mode = Mode::kInference;
  const StageModel model(s.graph, s.cluster, s.table, opt);
  Plan plan = pipeline_plan(s, p, m, batch, Schedule::kGPipe);
  plan.mode = Mode::kInference;
  const Simulation sim = simulate(plan, s.graph, s.cluster, s.table);
  double output = 0;
  for (ValueId v : s.graph.outputs()) output += static_cast<double>(s.graph.value(v).bytes().value());
  output /= model.graph_batch();
  ASSERT_GT(output, 0);
  for (int st = 0; st < p; ++st) {
    const double alone = static_cast<double>(
        model.memory(StageLoad{st, st, mb, 1, Checkpointing::kNone, Offload::kNone}).value());
    const double input = st > 0 ? model.input(st).per_sample : 0.0;
    const double backlog = st + 1 < p ? input : std::max(input + (m - 2) * output, (m - 1) * output);
    EXPECT_NEAR(static_cast<double>(sim.prediction.devices[static_cast<size_t>(st)].peak_memory.value()),
                alone + backlog * mb, 2.0)
        << "stage " << st;
  }
}

TEST(Simulator, DataParallelStepIsSlowestSharePlusAllReduce) {
  const Graph g = chain_graph({1e10, 1e10}, {64, 64}, {1 << 20, 1 << 20});
  const Cluster c = make_cluster({make_spec("fast", 2), make_spec("slow", 1)}, make_link(10, 5));
  const CostTable t = table_for(g, c);
  Plan plan;
  plan.graph = graph_identity(g);
  plan.global_batch = 9;
  plan.groups.push_back(DeviceGroup{{"d0", "d1"}, {6, 3}, GroupParallelism::kData});
  plan.stages.push_back(Stage{0, 1, 0, Checkpointing::kNone, Offload::kNone});
  const Simulation sim = simulate(plan, g, c, t);
  const double compute = 6 * 2 * 3 * 1e10 / 2e12;  // 6 samples, 2 nodes, forward + 2x backward, 2 TFLOP/s
  const double ar = std::min(2 * 5e-6 + (8.0 * (1 << 20)) / 10e9, 2 * (5e-6 + 8.0 * (1 << 20) / 10e9));
  EXPECT_NEAR(sim.step_time.value(), compute + ar, 1e-12);
  EXPECT_NEAR(sim.prediction.devices[0].busy.value(), sim.prediction.devices[1].busy.value(), 1e-12);
  EXPECT_GT(sim.prediction.energy.value(), 0);
}

// offload_pair_graph on `devices` (1 or 2) GPUs (DeviceKind::kCuda) or CPUs, one-sample microbatches, 1F1B:
// one stage of all three layers, or stage 0 = layers 0-1 (the 4 MiB layer 1 saves dies inside it) and
// stage 1 = layer 2.
struct OffloadPlan {
  Graph graph = offload_pair_graph();
  Cluster cluster;
  CostTable table;
  SearchOptions options;
  Plan plan;
  OffloadPlan(int devices, int m, DeviceKind kind) : cluster(uniform_cluster(devices, kind)) {
    table = table_for(graph, cluster);
    options.global_batch = m;
    options.host_bandwidth = BytesPerSecond(10e9);
    plan.graph = graph_identity(graph);
    plan.global_batch = m;
    plan.microbatches = m;
    for (int i = 0; i < devices; ++i) {
      plan.groups.push_back(DeviceGroup{{"d" + std::to_string(i)}, {1}, GroupParallelism::kData});
      plan.stages.push_back(
          Stage{i == 0 ? 0 : 2, i + 1 == devices ? 2 : 1, i, Checkpointing::kNone, Offload::kNone});
    }
  }
  Simulation run() const { return simulate(plan, graph, cluster, table, options); }
};

Seconds duration_of(const Simulation& sim, TaskKind kind) {
  for (const SimTask& t : sim.tasks) {
    if (t.kind == kind) return t.end - t.start;
  }
  return Seconds(0);
}

TEST(Simulator, ActivationOffloadCopiesInsideForwardAndBackwardAsTheStrategyCostsIt) {
  OffloadPlan x(1, 4, DeviceKind::kCuda);
  const Simulation plain = x.run();
  x.plan.stages[0].offload = Offload::kActivations;
  const Simulation off = x.run();
  // Moved per sample: what the stage saves and frees itself, the 4 MiB hidden output (saved by layer 1) and
  // layer 1's 64-byte output (saved by layer 2), not the input nor the result; 10 GB/s each way.
  const double copy = (4.0 * (1 << 20) + 64) / 10e9;
  EXPECT_NEAR((duration_of(off, TaskKind::kForward) - duration_of(plain, TaskKind::kForward)).value(), copy,
              1e-15);
  EXPECT_NEAR((duration_of(off, TaskKind::kBackward) - duration_of(plain, TaskKind::kBackward)).value(), copy,
              1e-15);
  EXPECT_NEAR((off.step_time - plain.step_time).value(), 4 * 2 * copy, 1e-12);
  EXPECT_NEAR((off.prediction.devices[0].busy - plain.prediction.devices[0].busy).value(), 4 * 2 * copy,
              1e-12);
  // The strategies' cost of the same stage (one slot, four microbatches) is the simulated step without the
  // optimizer step, which the strategies leave to the simulator.
  const StageModel model(x.graph, x.cluster, x.table, x.options);
  ChainProblem problem{&model, block_ends(model, 256), single_device_slots(model, {0}), 4,
                       1,      Schedule::kOneFOneB};
  const StageLoad load{0, 2, 1, 1, Checkpointing::kNone, Offload::kActivations};
  EXPECT_NEAR((off.step_time - duration_of(off, TaskKind::kUpdate)).value(),
              4 * model.microbatch_time(0, load).value(), 1e-12);
  // With one microbatch in flight activation offload keeps as much as it saves: evaluate_stage keeps it
  // plain.
  const auto choice = evaluate_stage(problem, 0, 0, 2);
  ASSERT_TRUE(choice);
  EXPECT_EQ(choice->offload, Offload::kNone);
  EXPECT_NEAR((plain.step_time - duration_of(plain, TaskKind::kUpdate)).value(), choice->busy.value(), 1e-12);
}

TEST(Simulator, ActivationOffloadKeepsWhatItDoesNotMoveBetweenForwardAndBackward) {
  OffloadPlan x(2, 4, DeviceKind::kCuda);
  const Simulation plain = x.run();
  x.plan.stages[0].offload = Offload::kActivations;
  const Simulation off = x.run();
  const StageModel model(x.graph, x.cluster, x.table, x.options);
  // Stage 0 keeps two microbatches in flight under 1F1B; the simulated peak is the search's memory model.
  for (Offload o : {Offload::kNone, Offload::kActivations}) {
    const Simulation& sim = o == Offload::kNone ? plain : off;
    EXPECT_NEAR(static_cast<double>(sim.prediction.devices[0].peak_memory.value()),
                static_cast<double>(model.memory(StageLoad{0, 1, 1, 2, Checkpointing::kNone, o}).value()),
                2.0);
  }
  // The second microbatch in flight keeps its 64-byte input and 64-byte result but not the 4 MiB it moved;
  // stage 1 is unchanged.
  EXPECT_NEAR(static_cast<double>(
                  (plain.prediction.devices[0].peak_memory - off.prediction.devices[0].peak_memory).value()),
              4.0 * (1 << 20), 2.0);
  EXPECT_EQ(off.prediction.devices[1].peak_memory, plain.prediction.devices[1].peak_memory);
  // Optimizer state offload on top: Adam's two moments of stage 0's 1 MiB + 64 bytes of weights (layer 1's
  // 16 floats) also leave the device.
  x.plan.stages[0].offload = Offload::kActivationsAndOptimizerState;
  const Simulation both = x.run();
  EXPECT_EQ((off.prediction.devices[0].peak_memory - both.prediction.devices[0].peak_memory).value(),
            (2 << 20) + 128);
  EXPECT_EQ(both.prediction.devices[0].model_state, Bytes((2 << 20) + 128));
}

TEST(Simulator, RefusesOffloadFromACpu) {
  OffloadPlan x(2, 2, DeviceKind::kCpu);
  EXPECT_NO_THROW(x.run());
  for (Offload o : {Offload::kOptimizerState, Offload::kActivations}) {
    x.plan.stages[1].offload = o;
    EXPECT_THROW(x.run(), Error) << offload_name(o);
  }
}

TEST(Simulator, ChromeTraceHasCompleteEventsInMicroseconds) {
  const Fixture s = identical(2);
  const Simulation sim =
      simulate(pipeline_plan(s, 2, 2, 4, Schedule::kOneFOneB), s.graph, s.cluster, s.table);
  const Json trace = chrome_trace(sim);
  int complete = 0;
  double end = 0;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "X") continue;
    ++complete;
    end = std::max(end, e["ts"].get<double>() + e["dur"].get<double>());
    EXPECT_GE(e["dur"].get<double>(), 0);
    EXPECT_TRUE(e.contains("pid") && e.contains("tid") && e.contains("ts"));
  }
  EXPECT_EQ(complete, static_cast<int>(sim.tasks.size()));
  EXPECT_NEAR(end, sim.step_time.value() * 1e6, 1e-3);
}

// Every trainable parameter is updated where the engine keeps it: a GPU stage's own on its GPU, an
// optimizer-state-offloading stage's and the CPU stage's on the host (the CPU device). The places update in
// parallel after the last backward, each taking its byte share of the measured whole-model step.
TEST(Simulator, TrainingEndsWithAnOptimizerStepWhereEachParameterLives) {
  DeviceSpec cpu = make_spec("cpu", 1);
  cpu.kind = DeviceKind::kCpu;
  Fixture s{chain_graph({1e10, 1e10, 1e10}, {256, 256, 256}, {1024, 1024, 1024}),
            make_cluster({make_spec("gpu", 1), make_spec("gpu", 1), cpu}, make_link(1e21, 0)),
            {}};
  s.table = table_for(s.graph, s.cluster);
  SearchOptions measured;
  measured.update_times["gpu"] = Seconds(0.3);  // the whole model's step on one such device
  measured.update_times["cpu"] = Seconds(0.9);
  struct Case {
    Offload stage0;
    double expected_tail;                   // the longest update
    std::map<std::string, double> updates;  // resource -> duration
  };
  const Case cases[] = {
      {Offload::kNone, 0.3, {{"update on d0", 0.1}, {"update on d1", 0.1}, {"update on d2", 0.3}}},
      {Offload::kOptimizerState, 0.6, {{"update on d1", 0.1}, {"update on d2", 0.6}}},
  };
  for (const Case& c : cases) {
    Plan plan = pipeline_plan(s, 3, 4, 64, Schedule::kOneFOneB);
    plan.stages[0].offload = c.stage0;
    const Simulation sim = simulate(plan, s.graph, s.cluster, s.table, measured);
    std::map<std::string, double> updates;
    Seconds last_end(0);  // of the backwards and what follows them (stage 0's gradients to the host)
    for (const SimTask& t : sim.tasks) {
      if (t.kind != TaskKind::kUpdate) last_end = std::max(last_end, t.end);
    }
    for (const SimTask& t : sim.tasks) {
      if (t.kind != TaskKind::kUpdate) continue;
      updates[sim.resources[static_cast<size_t>(t.resource)].name] = (t.end - t.start).value();
      EXPECT_NEAR(t.start.value(), last_end.value(), 1e-12) << t.name;
    }
    ASSERT_EQ(updates.size(), c.updates.size()) << offload_name(c.stage0);
    for (const auto& [name, duration] : c.updates) EXPECT_NEAR(updates[name], duration, 1e-12) << name;
    EXPECT_NEAR(sim.step_time.value(), last_end.value() + c.expected_tail, 1e-12);
  }
  // Without a measurement the formula's time is used; inference has no update.
  const Plan plan = pipeline_plan(s, 3, 4, 64, Schedule::kOneFOneB);
  EXPECT_LT(simulate(plan, s.graph, s.cluster, s.table).step_time.value(),
            simulate(plan, s.graph, s.cluster, s.table, measured).step_time.value());
  Plan inference = plan;
  inference.mode = Mode::kInference;
  for (const SimTask& t : simulate(inference, s.graph, s.cluster, s.table, measured).tasks)
    EXPECT_NE(t.kind, TaskKind::kUpdate);
}

// A plan of GPUs only updates what the host keeps (here: the weights both replicas read) on the cluster's CPU
// of the same node, when the cluster has one there, else on the plan's first device.
TEST(Simulator, AGpuOnlyPlanUpdatesHostKeptParametersOnItsNodesCpu) {
  DeviceSpec cpu = make_spec("cpu", 1);
  cpu.kind = DeviceKind::kCpu;
  Fixture s{chain_graph({1e10, 1e10}, {256, 256}, {1024, 1024}),
            make_cluster({make_spec("gpu", 1), make_spec("gpu", 1), cpu}, make_link(1e21, 0)),
            {}};
  s.table = table_for(s.graph, s.cluster);
  SearchOptions measured;
  measured.update_times["gpu"] = Seconds(0.3);
  measured.update_times["cpu"] = Seconds(0.9);
  Plan data;
  data.graph = graph_identity(s.graph);
  data.mode = Mode::kTraining;
  data.strategy = StrategyKind::kData;
  data.global_batch = 2;
  data.groups = {DeviceGroup{{"d0", "d1"}, {1, 1}, GroupParallelism::kData}};
  data.stages = {Stage{0, 1, 0}};
  const auto updates = [&](const Cluster& cluster) {
    std::map<std::string, double> out;
    const Simulation sim = simulate(data, s.graph, cluster, s.table, measured);
    for (const SimTask& t : sim.tasks) {
      if (t.kind == TaskKind::kUpdate)
        out[sim.resources[static_cast<size_t>(t.resource)].name] = (t.end - t.start).value();
    }
    return out;
  };
  const auto on_host = updates(s.cluster);
  ASSERT_EQ(on_host.size(), 1u);
  EXPECT_NEAR(on_host.at("update on d2"), 0.9, 1e-12);
  Cluster elsewhere = s.cluster;
  elsewhere.devices[2].node = "node1";
  const auto on_first = updates(elsewhere);
  ASSERT_EQ(on_first.size(), 1u);
  EXPECT_NEAR(on_first.at("update on d0"), 0.3, 1e-12);
}

// Two equal CPUs, one planned 3x slower (--device-slowdown, a rebalance: the plan records it, the cluster's
// spec is slowed): the optimizer step is split between them (the engine's OptimizerParts) by cores over
// slowdown, so both equal weights go to the other one (1 MiB at speed 4 before 1 MiB at 4/3), whichever
// group the plan lists first; reordering a plan's groups (the same plan) predicts the same step. It went to
// the first group's device once: GPT plans differed by 16% by group order alone.
TEST(Simulator, TheUpdateIsSplitByCoresOverSlowdownWhateverTheGroupOrder) {
  DeviceSpec cpu = make_spec("cpu", 1);
  cpu.kind = DeviceKind::kCpu;
  cpu.cores = 4;
  Fixture s{chain_graph({1e10, 1e10}, {256, 256}, {1 << 18, 1 << 18}),
            make_cluster({cpu, cpu}, make_link(1e21, 0)),
            {}};
  s.table = table_for(s.graph, s.cluster);
  slow_down_device(s.cluster, s.table, "d0", 3.0);
  SearchOptions measured;
  measured.update_times["cpu"] = Seconds(0.5);
  measured.update_times[s.cluster.devices[0].spec.name] = Seconds(1.5);
  const auto updates = [](const Simulation& sim) {
    std::map<std::string, double> out;
    for (const SimTask& t : sim.tasks) {
      if (t.kind == TaskKind::kUpdate)
        out[sim.resources[static_cast<size_t>(t.resource)].name] = (t.end - t.start).value();
    }
    return out;
  };
  for (const SearchOptions& options : {SearchOptions{}, measured}) {
    Plan plan = pipeline_plan(s, 2, 2, 4, Schedule::kOneFOneB);  // groups d0, d1
    plan.source.device_slowdowns["d0"] = 3.0;
    Plan reordered = plan;
    std::swap(reordered.groups[0], reordered.groups[1]);
    std::swap(reordered.stages[0].group, reordered.stages[1].group);
    const Simulation a = simulate(plan, s.graph, s.cluster, s.table, options);
    const Simulation b = simulate(reordered, s.graph, s.cluster, s.table, options);
    EXPECT_NEAR(a.step_time.value(), b.step_time.value(), 1e-12);
    for (const Simulation* sim : {&a, &b}) {
      const auto u = updates(*sim);
      ASSERT_EQ(u.size(), 1u);
      EXPECT_EQ(u.begin()->first, "update on d1");
    }
  }
  // Unslowed equals take one weight each, in half the whole step's time (measured: 0.5 s for both weights).
  Fixture same{s.graph, make_cluster({cpu, cpu}, make_link(1e21, 0)), {}};
  same.table = table_for(same.graph, same.cluster);
  const Plan even = pipeline_plan(same, 2, 2, 4, Schedule::kOneFOneB);
  const auto u = updates(simulate(even, same.graph, same.cluster, same.table, measured));
  ASSERT_EQ(u.size(), 2u);
  EXPECT_NEAR(u.at("update on d0"), 0.25, 1e-12);
  EXPECT_NEAR(u.at("update on d1"), 0.25, 1e-12);
  // Processes of `partita launch` and plans with a GPU step in one place.
  Plan launched = even;
  launched.processes = ProcessLayout::kLaunch;
  SearchOptions with_links = measured;
  with_links.process_links = ProcessLinks{make_link(1e21, 0), make_link(1e21, 0)};
  EXPECT_EQ(updates(simulate(launched, same.graph, same.cluster, same.table, with_links)).size(), 1u);
  Fixture mixed{s.graph, make_cluster({cpu, make_spec("gpu", 1)}, make_link(1e21, 0)), {}};
  mixed.table = table_for(mixed.graph, mixed.cluster);
  const auto u_mixed = updates(simulate(pipeline_plan(mixed, 2, 2, 4, Schedule::kOneFOneB), mixed.graph,
                                        mixed.cluster, mixed.table, measured));
  EXPECT_EQ(u_mixed.size(), 2u) << "the GPU's own weight on the GPU, the CPU's on the host";
  EXPECT_EQ(u_mixed.count("update on d0"), 1u);
}

// Device memory holds the weights where the engine keeps them (StageModel's WeightHome). tied_weight_graph:
// E (4000 bytes) read by nodes 0 and 2, W (8000 bytes) by node 1; Adam keeps two moments.
TEST(Simulator, DeviceMemoryHoldsTheWeightsWhereTheEngineKeepsThem) {
  Fixture s{
      tied_weight_graph(), make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1e21, 0)), {}};
  s.table = table_for(s.graph, s.cluster);
  Plan plan;
  plan.graph = graph_identity(s.graph);
  plan.mode = Mode::kTraining;
  plan.optimizer = Optimizer::kAdam;
  plan.global_batch = 2;
  plan.microbatches = 2;
  // A pipeline: the second GPU holds a copy of E and its gradient, and the state of W only.
  Plan pipe = plan;
  pipe.strategy = StrategyKind::kPipeline;
  pipe.groups = {DeviceGroup{{"d0"}, {1}, GroupParallelism::kData},
                 DeviceGroup{{"d1"}, {1}, GroupParallelism::kData}};
  pipe.stages = {Stage{0, 0, 0}, Stage{1, 2, 1}};
  Simulation sim = simulate(pipe, s.graph, s.cluster, s.table);
  ASSERT_EQ(sim.prediction.devices.size(), 2u);
  EXPECT_EQ(sim.prediction.devices[0].model_state, Bytes(4000 + 4000));
  EXPECT_EQ(sim.prediction.devices[1].model_state, Bytes(12000 + 12000 + 2 * 8000));
  // Two data-parallel replicas: copies and gradients of everything, the optimizer state on the host.
  Plan data = plan;
  data.strategy = StrategyKind::kData;
  data.microbatches = 1;
  data.groups = {DeviceGroup{{"d0", "d1"}, {1, 1}, GroupParallelism::kData}};
  data.stages = {Stage{0, 2, 0}};
  sim = simulate(data, s.graph, s.cluster, s.table);
  ASSERT_EQ(sim.prediction.devices.size(), 2u);
  for (const DevicePrediction& d : sim.prediction.devices) EXPECT_EQ(d.model_state, Bytes(24000)) << d.device;
  // A branch plan's devices the same way: what Adam adds over plain SGD is the state each device keeps. On
  // CPU devices the host's tensors count once, at their first reader.
  Plan branch = pipe;
  branch.strategy = StrategyKind::kBranch;
  branch.microbatches = 1;
  branch.groups[0].batch_shares = {2};
  branch.groups[1].batch_shares = {2};
  branch.stages[0].nodes = {0, 1};
  branch.stages[0].last = 1;
  branch.stages[1].nodes = {2};
  branch.stages[1].first = 2;
  const auto state_of = [&](const Cluster& cluster) {
    Plan sgd = branch;
    sgd.optimizer = Optimizer::kSgd;
    const CostTable table = table_for(s.graph, cluster);
    const Simulation adam_sim = simulate(branch, s.graph, cluster, table);
    const Simulation sgd_sim = simulate(sgd, s.graph, cluster, table);
    std::vector<int64_t> state;
    for (size_t i = 0; i < 2; ++i)
      state.push_back(
          (adam_sim.prediction.devices[i].peak_memory - sgd_sim.prediction.devices[i].peak_memory).value());
    return state;
  };
  EXPECT_EQ(state_of(s.cluster), (std::vector<int64_t>{2 * 8000, 0}));
  Cluster cpus = s.cluster;
  for (auto& d : cpus.devices) d.spec.kind = DeviceKind::kCpu;
  EXPECT_EQ(state_of(cpus), (std::vector<int64_t>{2 * 12000, 0}));
}

// Planned for `partita launch` (one process per device here), the replicas' all-reduce crosses the collective
// link between processes after each GPU's own link; in one process it takes the cluster's link alone.
TEST(Simulator, ALaunchedPlanAllReducesThroughTheLinkBetweenProcesses) {
  const Graph g = chain_graph({1e10, 1e10}, {64, 64}, {1 << 20, 1 << 20});
  const Cluster c = make_cluster({make_spec("fast", 2), make_spec("slow", 1)}, make_link(10, 5));
  const CostTable t = table_for(g, c);
  Plan plan;
  plan.graph = graph_identity(g);
  plan.global_batch = 9;
  plan.groups.push_back(DeviceGroup{{"d0", "d1"}, {6, 3}, GroupParallelism::kData});
  plan.stages.push_back(Stage{0, 1, 0, Checkpointing::kNone, Offload::kNone});
  SearchOptions options;
  options.process_links = ProcessLinks{LinkSpec{"messages", Seconds(1), BytesPerSecond(1e3), "test"},
                                       LinkSpec{"collectives", Seconds(100e-6), BytesPerSecond(1e9), "test"}};
  const double compute = 6 * 2 * 3 * 1e10 / 2e12;
  const Bytes weights(8 << 20);
  EXPECT_NEAR(simulate(plan, g, c, t, options).step_time.value(),
              compute + allreduce_time(weights, 2, make_link(10, 5)).value(), 1e-12);
  plan.processes = ProcessLayout::kLaunch;
  EXPECT_NEAR(simulate(plan, g, c, t, options).step_time.value(),
              compute + allreduce_time(weights, 2,
                                       links_in_series(make_link(10, 5), options.process_links->collective))
                            .value(),
              1e-12);
  options.process_links.reset();
  EXPECT_THROW((void)simulate(plan, g, c, t, options), Error);
}

// A launched pipeline's stages are processes: each boundary transfer crosses the message link between them.
TEST(Simulator, ALaunchedPipelineSendsItsActivationsThroughTheLinkBetweenProcesses) {
  Fixture s = identical(2);
  for (auto& d : s.cluster.devices) d.spec.kind = DeviceKind::kCpu;  // CPUs: the process link alone
  s.cluster.intra_node_link = make_link(100, 1);
  Plan plan = pipeline_plan(s, 2, 4, 64, Schedule::kOneFOneB);
  SearchOptions options;
  options.process_links = ProcessLinks{LinkSpec{"messages", Seconds(40e-6), BytesPerSecond(2e9), "test"},
                                       LinkSpec{"collectives", Seconds(1), BytesPerSecond(1e3), "test"}};
  const Bytes boundary(16 * 256 * 4);  // 16 samples of 256 floats after stage 0
  EXPECT_NEAR(duration_of(simulate(plan, s.graph, s.cluster, s.table, options), TaskKind::kTransfer).value(),
              p2p_time(boundary, make_link(100, 1)).value(), 1e-15);
  plan.processes = ProcessLayout::kLaunch;
  EXPECT_NEAR(duration_of(simulate(plan, s.graph, s.cluster, s.table, options), TaskKind::kTransfer).value(),
              p2p_time(boundary, options.process_links->message).value(), 1e-15);
}

TEST(Simulator, RefusesAPlanForAnotherGraph) {
  const Fixture s = identical(2), other = identical(3);
  EXPECT_THROW(simulate(pipeline_plan(s, 2, 1, 4, Schedule::kGPipe), other.graph, other.cluster, other.table),
               partita::Error);
}

// A hand-edited pipeline whose two stages share a group (`run` runs it; the planner never makes one) is
// refused in a user's words, not link_between's "a device has no link to itself".
// A plan whose stages share a group runs (each stage a worker of its own), but the simulator gives each
// stage's devices a resource of their own: it would predict the stages' work on one device as if it ran at
// once. Adjacent stages (whose link to each other the cluster has not) and stages 0 and 2 of three alike; a
// branch plan too.
TEST(Simulator, RefusesTwoStagesOnOneDeviceNamingThem) {
  const auto error_of = [](const Plan& plan, const Fixture& s) -> std::string {
    try {
      (void)simulate(plan, s.graph, s.cluster, s.table);
    } catch (const Error& e) {
      return e.what();
    }
    return "(simulated)";
  };
  const Fixture two = identical(2);
  Plan adjacent = pipeline_plan(two, 2, 2, 4, Schedule::kOneFOneB);
  adjacent.stages[1].group = adjacent.stages[0].group;
  EXPECT_NE(error_of(adjacent, two)
                .find("plan: stages 0 and 1 both run on d0; the simulator models each stage "
                      "on devices of its own"),
            std::string::npos)
      << error_of(adjacent, two);
  const Fixture three = identical(3);
  Plan apart = pipeline_plan(three, 3, 2, 4, Schedule::kOneFOneB);
  EXPECT_EQ(error_of(apart, three), "(simulated)");
  apart.stages[2].group = apart.stages[0].group;
  EXPECT_NE(error_of(apart, three).find("stages 0 and 2 both run on d0"), std::string::npos)
      << error_of(apart, three);
  Plan branch = pipeline_plan(two, 2, 1, 2, Schedule::kOneFOneB);
  branch.strategy = StrategyKind::kBranch;
  branch.stages[0].nodes = {0};
  branch.stages[1].nodes = {1};
  EXPECT_EQ(error_of(branch, two), "(simulated)");
  branch.stages[1].group = branch.stages[0].group;
  EXPECT_NE(error_of(branch, two).find("stages 0 and 1 both run on d0"), std::string::npos)
      << error_of(branch, two);
}

TEST(Simulator, EvaluateFillsThePrediction) {
  const Fixture s = identical(2);
  const Plan p = evaluate(pipeline_plan(s, 2, 2, 4, Schedule::kOneFOneB), s.graph, s.cluster, s.table);
  EXPECT_GT(p.prediction.step_time.value(), 0);
  EXPECT_NEAR(p.prediction.samples_per_second, 4 / p.prediction.step_time.value(), 1e-9);
  EXPECT_EQ(p.prediction.devices.size(), 2u);
}

}  // namespace
}  // namespace partita

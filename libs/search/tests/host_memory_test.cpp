// Host memory of simulated plans (src/host_memory.cpp, the model in simulator.h): what partita's engine keeps
// in the memory of each machine, and the planner's refusal of plans that do not fit it.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "partita/search/planner.h"
#include "partita/search/simulator.h"
#include "partita/search/stage_model.h"
#include "partita/search/tensor_model.h"
#include "test_support.h"

namespace partita {
namespace {

using testing::make_cluster;
using testing::make_link;
using testing::make_spec;
using testing::table_for;
using testing::tied_weight_graph;
using There = TensorModel::GradientsAtStart;

// tied_weight_graph's weights: E (4000 bytes) read by nodes 0 and 2, W (8000 bytes) read by node 1; its
// input x: 64 bytes a sample; its output y [1, 10] is trained with cross-entropy (the default loss): the
// targets are one int64 class index a sample.
constexpr int64_t kE = 4000, kW = 8000, kX = 64, kT = 8;
// A parameter trained with Adam where it lives: itself, its gradient and two moments.
constexpr int64_t adam(int64_t bytes) { return 4 * bytes; }

DeviceSpec cpu_spec(double mem_gib) {
  DeviceSpec s = make_spec("cpu", 1, mem_gib);
  s.kind = DeviceKind::kCpu;
  s.cores = 1;
  return s;
}

// Two GPUs ("d0", "d1") and the machine's CPU ("d2") on node0.
Cluster gpus_and_cpu(double host_gib = 64) {
  return make_cluster({make_spec("gpu", 1), make_spec("gpu", 1), cpu_spec(host_gib)}, make_link(100, 0));
}

Plan base_plan(const Graph& g, Mode mode) {
  Plan p;
  p.graph = graph_identity(g);
  p.mode = mode;
  p.optimizer = Optimizer::kAdam;
  p.global_batch = 2;
  p.microbatches = 2;
  return p;
}

// Stage 0 = node 0 on `first`, stage 1 = nodes 1-2 on `second`.
Plan two_stage(const Graph& g, const std::string& first, const std::string& second,
               Mode mode = Mode::kTraining) {
  Plan p = base_plan(g, mode);
  p.strategy = StrategyKind::kPipeline;
  p.groups = {DeviceGroup{{first}, {1}, GroupParallelism::kData},
              DeviceGroup{{second}, {1}, GroupParallelism::kData}};
  p.stages = {Stage{0, 0, 0}, Stage{1, 2, 1}};
  return p;
}

// One stage over the whole graph, replicated on `devices` with `shares` samples each, one microbatch.
Plan data_plan(const Graph& g, const std::vector<std::string>& devices, const std::vector<int>& shares) {
  Plan p = base_plan(g, Mode::kTraining);
  p.strategy = StrategyKind::kData;
  p.microbatches = 1;
  p.groups = {DeviceGroup{devices, shares, GroupParallelism::kData}};
  p.stages = {Stage{0, g.num_nodes() - 1, 0}};
  return p;
}

const HostPrediction& only_host(const Simulation& sim) {
  EXPECT_EQ(sim.prediction.hosts.size(), 1u);
  return sim.prediction.hosts.front();
}

// The most that a training plan's CPU devices (one a stage, in one process) hold at once beyond the model
// state over the simulated step, from the simulated tasks and the stage model alone, read at every time a
// task or one of its moments starts or ends: a device holds what each microbatch keeps from its forward's end
// to its backward's end, no gradient before its first backward, the moment of the task it runs then
// (StageModel's forward_moments and backward_moments, kMomentsPerTask each; the first backward's without the
// gradients not made yet), and all step the shared input it holds once (StageModel::shared_input_once,
// which its microbatches' figures and forward moments leave out).
Bytes most_working_at_once(const Simulation& sim, const Plan& plan, const Graph& g, const Cluster& c,
                           const CostTable& t) {
  SearchOptions o;
  o.mode = plan.mode;
  o.global_batch = plan.global_batch;
  o.optimizer = plan.optimizer;
  o.loss = plan.loss;
  const StageModel m(g, c, t, o);
  struct Task {
    Seconds start, end;
    std::vector<StageModel::Moment> moments;
  };
  struct Device {
    double kept = 0, gradients = 0, once = 0;
    Seconds first_backward{1e300};
    std::vector<Task> tasks;
    std::vector<std::pair<Seconds, Seconds>> keeps;  // from a forward's end to its backward's end
  };
  std::vector<Device> devices(plan.stages.size());
  std::vector<Seconds> times;
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    const Stage& st = plan.stages[s];
    const DeviceGroup& group = plan.groups[static_cast<size_t>(st.group)];
    EXPECT_EQ(group.devices.size(), 1u) << "the oracle takes one device a stage";
    const int d = m.device_index(group.devices[0]);
    StageLoad load{st.first, st.last, group.batch_shares[0]};
    load.device = d;
    load.microbatches = plan.microbatches;
    Device& device = devices[s];
    device.once = m.shared_input_once(st.first, d);
    device.kept = m.activation(st.first, st.last).at(load.samples) - device.once;
    device.gradients = static_cast<double>(m.gradient_bytes(load).value());
    std::map<int, Seconds> forward_end;
    for (const SimTask& task : sim.tasks) {
      if (task.stage != static_cast<int>(s) || task.kind == TaskKind::kTransfer) continue;
      if (task.kind == TaskKind::kForward) forward_end[task.microbatch] = task.end;
      if (task.kind == TaskKind::kBackward)
        device.first_backward = std::min(device.first_backward, task.start);
    }
    for (const SimTask& task : sim.tasks) {
      if (task.stage != static_cast<int>(s)) continue;
      const int spec = m.spec_of(d);
      if (task.kind == TaskKind::kForward) {
        device.tasks.push_back(Task{task.start, task.end, m.forward_moments(spec, load, kMomentsPerTask)});
        for (StageModel::Moment& moment : device.tasks.back().moments) moment.bytes -= device.once;
      } else if (task.kind == TaskKind::kBackward) {
        const bool first = task.start == device.first_backward;
        device.tasks.push_back(
            Task{task.start, task.end, m.backward_moments(spec, load, first, kMomentsPerTask)});
        device.keeps.emplace_back(forward_end.at(task.microbatch), task.end);
      } else {
        continue;
      }
      for (const StageModel::Moment& moment : device.tasks.back().moments)
        times.push_back(task.start + (task.end - task.start) * moment.start);
      times.push_back(task.end);
    }
  }
  double most = -1e300;
  for (const Seconds at : times) {
    double sum = 0;
    for (const Device& device : devices) {
      sum += device.once;
      for (const auto& [from, to] : device.keeps) sum += from <= at && at < to ? device.kept : 0.0;
      if (at < device.first_backward) sum -= device.gradients;
      for (const Task& task : device.tasks) {
        if (at < task.start || at >= task.end) continue;
        double held = 0;  // the last moment started by then
        for (const StageModel::Moment& moment : task.moments) {
          if (task.start + (task.end - task.start) * moment.start <= at) held = moment.bytes;
        }
        sum += held;
      }
    }
    most = std::max(most, sum);
  }
  return Bytes(static_cast<int64_t>(most));
}

TEST(HostMemory, AGpuPipelineKeepsOnTheHostOnlyWhatSeveralStagesRead) {
  const Graph g = tied_weight_graph();
  const Cluster c = gpus_and_cpu(64);
  const CostTable t = table_for(g, c);
  // W lives on d1 (its only reader); the tied E stays on the host with its gradient and Adam's moments.
  Simulation sim = simulate(two_stage(g, "d0", "d1"), g, c, t);
  const HostPrediction& h = only_host(sim);
  EXPECT_EQ(h.node, "node0");
  EXPECT_EQ(h.model_state, Bytes(adam(kE)));
  EXPECT_EQ(h.cpu_working, Bytes(0));
  EXPECT_EQ(h.offloaded_activations, Bytes(0));
  // Adam's step computes its denominator out of place: two E-sized temporaries beside the state.
  EXPECT_EQ(h.update_working, Bytes(2 * kE));
  // The step's inputs and targets (2 samples) stay on the host, beside the GPUs' copies.
  EXPECT_EQ(h.step_batch, Bytes(2 * (kX + kT)));
  EXPECT_EQ(h.peak_memory, Bytes(adam(kE) + 2 * (kX + kT) + 2 * kE));
  EXPECT_EQ(h.capacity, Bytes(int64_t{64} << 30));
  EXPECT_TRUE(sim.fits_host_memory);

  // Offloading stage 1's optimizer state keeps W and its state on the host too.
  Plan offloaded = two_stage(g, "d0", "d1");
  offloaded.stages[1].offload = Offload::kOptimizerState;
  sim = simulate(offloaded, g, c, t);
  EXPECT_EQ(only_host(sim).model_state, Bytes(adam(kE) + adam(kW)));

  // Data-parallel replicas read every weight: all of it is on the host, the devices hold copies.
  sim = simulate(data_plan(g, {"d0", "d1"}, {1, 1}), g, c, t);
  EXPECT_EQ(only_host(sim).model_state, Bytes(adam(kE) + adam(kW)));

  // SGD without momentum keeps no state: weight and gradient only.
  Plan sgd = two_stage(g, "d0", "d1");
  sgd.optimizer = Optimizer::kSgd;
  sim = simulate(sgd, g, c, t);
  EXPECT_EQ(only_host(sim).model_state, Bytes(2 * kE));
  // SGD updates in place, with or without momentum.
  EXPECT_EQ(only_host(sim).update_working, Bytes(0));
  EXPECT_EQ(only_host(sim).peak_memory, Bytes(2 * kE + 2 * (kX + kT)));
  sgd.optimizer = Optimizer::kSgdMomentum;
  EXPECT_EQ(only_host(simulate(sgd, g, c, t)).update_working, Bytes(0));
  // AdamW as Adam (its decoupled decay is in place); the largest parameter updated here sets the size.
  Plan adamw = offloaded;
  adamw.optimizer = Optimizer::kAdamW;
  EXPECT_EQ(only_host(simulate(adamw, g, c, t)).update_working, Bytes(2 * kW));
}

TEST(HostMemory, CpuStagesAddTheirWorkingMemoryAndShareTheModelState) {
  const Graph g = tied_weight_graph();
  Cluster c = make_cluster({cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const CostTable t = table_for(g, c);
  const Simulation sim = simulate(two_stage(g, "d0", "d1"), g, c, t);
  const HostPrediction& h = only_host(sim);
  // Every weight, gradient and moment once, though each CPU device's own prediction counts its part.
  EXPECT_EQ(h.model_state, Bytes(adam(kE) + adam(kW)));
  ASSERT_EQ(sim.prediction.devices.size(), 2u);
  Bytes states(0), working(0);
  for (const auto& d : sim.prediction.devices) {
    states += d.model_state;
    working += d.peak_memory - d.model_state;
  }
  EXPECT_EQ(states, h.model_state);
  EXPECT_GT(working, Bytes(0));
  // Two microbatches: the second one's gradients are made afresh and added into the first's, each in its
  // reader's backward, which its device's own figure holds (StageModel::backward_peak): the host adds
  // nothing for them to what the devices hold at once.
  EXPECT_EQ(h.cpu_working, most_working_at_once(sim, two_stage(g, "d0", "d1"), g, c, t));
  EXPECT_LE(h.cpu_working, working);
  // The larger of the backward's working memory and the Adam step's temporaries (the update runs once the
  // activations are gone): the two CPUs step their parts at once (update_task.h), two of W on one and two
  // of E on the other.
  EXPECT_EQ(h.update_working, Bytes(2 * kW + 2 * kE));
  // Stage 0's device counts its microbatch's rows of the input (1 sample), stage 1's its rows of the
  // targets; the other sample's are the host's.
  EXPECT_EQ(h.step_batch, Bytes(kX + kT));
  EXPECT_EQ(h.peak_memory, h.model_state + h.step_batch + std::max(h.cpu_working, Bytes(2 * kW + 2 * kE)));
}

// CPU replicas share the host's parameters: the first gradient of each becomes its .grad, every other
// replica's is made afresh and added in, so while backward passes W each adding replica holds a copy of it.
// With one microbatch a replica does not know whether it is the first: the host adds the copies. With
// several, a device's backwards after its first are known to add, and its own figure holds them.
TEST(HostMemory, CpuReplicasAddingIntoSharedGradientsHoldAFreshCopyOfTheLargestWeight) {
  const Graph g = tied_weight_graph();
  const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const CostTable t = table_for(g, c);
  const auto fresh = [&](int replicas, int microbatches) {
    Plan p = base_plan(g, Mode::kTraining);
    p.strategy = StrategyKind::kData;
    p.global_batch = 6;
    p.microbatches = microbatches;
    p.groups = {DeviceGroup{{"d0", "d1", "d2"}, {2, 2, 2}, GroupParallelism::kData}};
    p.groups[0].devices.resize(static_cast<size_t>(replicas));
    p.groups[0].batch_shares = std::vector<int>(static_cast<size_t>(replicas), 6 / microbatches / replicas);
    p.stages = {Stage{0, 2, 0}};
    const Simulation sim = simulate(p, g, c, t);
    Bytes working(0);
    for (const auto& d : sim.prediction.devices) working += d.peak_memory - d.model_state;
    return (only_host(sim).cpu_working - working).value();
  };
  EXPECT_EQ(fresh(1, 1), 0);       // one device, one backward: nothing is added
  EXPECT_EQ(fresh(2, 1), kW);      // the second replica adds
  EXPECT_EQ(fresh(3, 1), 2 * kW);  // the second and the third
  EXPECT_EQ(fresh(1, 3), 0);       // later microbatches add into the first one's: in the device's figure
  EXPECT_EQ(fresh(3, 2), 0);
}

// With one microbatch a device's backward peak leaves out the gradients not made yet (StageModel::
// backward_peak): this chain's is the loss's backward, where none exists. CPU replicas make the same host
// gradients, so the host leaves them out once: every replica's but one are added back.
TEST(HostMemory, CpuReplicasLeaveOutTheGradientsNotMadeYetOnce) {
  // x -> n0 (w0, 4000 bytes) -> y0 (40 per sample) -> n1 (w1, 40) -> y1 (40) -> n2 (w2, 40) -> y2 (16000).
  const Graph g = testing::chain_graph({1e9, 1e9, 1e9}, {10, 10, 4000}, {1000, 10, 10});
  const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const CostTable t = table_for(g, c);
  const Simulation sim = simulate(data_plan(g, {"d0", "d1"}, {1, 1}), g, c, t);
  Bytes working(0);
  // Each device: its activations (x 64, y0 and y1 40 each, the loss's tensor of y2's size 16000 and its
  // 8-byte class index target; y2 itself is dropped once the loss has it) plus the loss's backward, two
  // more of y2's size, less every gradient (4080 bytes), none made yet.
  for (const auto& d : sim.prediction.devices) {
    EXPECT_EQ(d.peak_memory - d.model_state, Bytes(64 + 80 + 16000 + 8 + 2 * 16000 - 4080)) << d.device;
    working += d.peak_memory - d.model_state;
  }
  // The host adds back one replica's 4080, and the second replica's fresh copy of w0's gradient (made at
  // n0's backward, not beside the loss's: an over-count the host's figure keeps).
  EXPECT_EQ(only_host(sim).cpu_working, working + Bytes(4080) + Bytes(4000));
}

// A CPU tensor group: each device's peak leaves out the gradients it has not made yet (TensorModel::
// backward_peak), and against the host's one set of gradients the group holds more: each replica's other
// devices make the replicated gradients whole for themselves, the split parts go into the host's only after
// the backward (r - 1 sets more), the r replicas' first devices make the same host gradients (r - 1 times the
// replicated ones not made yet added back), and r - 1 of them add a fresh copy of the largest gradient.
TEST(HostMemory, ACpuTensorGroupHoldsTheGradientsItsDevicesMakeForThemselves) {
  // scale (64 bytes, replicated), w1 (64 KiB) and w2 (4 MiB) split; the 1 MB output puts a one-microbatch
  // backward's peak at its start, where scale's gradient is not made yet.
  constexpr int64_t kFloats = 1024, kScale = 64, kSplit = 65536 + kFloats * 1024 * 4;
  const Graph g = testing::scaled_pair_graph(kFloats);
  const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64), cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const CostTable t = table_for(g, c);
  const auto extra = [&](int replicas, int degree, int microbatches = 1) {
    Plan p = data_plan(g, {"d0", "d1", "d2", "d3"}, {1, 1, 1, 1});
    p.strategy = StrategyKind::kTensor;
    p.global_batch = replicas * microbatches;
    p.microbatches = microbatches;
    p.groups[0] = DeviceGroup{{}, {}, GroupParallelism::kTensor, degree};
    for (int d = 0; d < replicas * degree; ++d) {
      p.groups[0].devices.push_back("d" + std::to_string(d));
      p.groups[0].batch_shares.push_back(1);
    }
    const Simulation sim = simulate(p, g, c, t);
    Bytes working(0);
    for (const auto& d : sim.prediction.devices) working += d.peak_memory - d.model_state;
    return (only_host(sim).cpu_working - working).value();
  };
  EXPECT_EQ(extra(1, 2), kScale);
  EXPECT_EQ(extra(1, 4), 3 * kScale);
  EXPECT_EQ(extra(2, 2), 2 * kScale + kSplit + kScale + kFloats * 1024 * 4);
  // Several microbatches: every gradient is there after the first, and each device adds its later ones of
  // w2 into its own part, a fresh copy of that part at a time (not of the whole w2), which its own figure
  // holds (TensorModel::backward_peak): the host adds the replicated gradients only.
  EXPECT_EQ(extra(1, 2, 2), kScale);
  EXPECT_EQ(extra(1, 4, 2), 3 * kScale);
}

// x [4, 16] @ w (a shared user input, 64 KiB) -> relu: the graph every shared-input test below uses.
Graph shared_matrix_graph() {
  using testing::f32;
  Graph g;
  const ValueId x = f32(g, g.add_input("x"), {4, 16});
  const ValueId w = f32(g, g.add_input("w"), {16, 1024});
  g.value(w).shared = true;
  const ValueId y = f32(g, g.add_value(ValueKind::kTensor, "y"), {4, 1024});
  const ValueId z = f32(g, g.add_value(ValueKind::kTensor, "z"), {4, 1024});
  testing::add_costed_nodes(g, {{"aten::matmul", {x, w}, {y}}, {"aten::relu", {y}, {z}}}, {z});
  return g;
}

// shared_matrix_graph with a third node that reads w again: o [4, 16] = z @ w, the graph's output.
Graph shared_matrix_read_twice() {
  Graph g = shared_matrix_graph();
  const ValueId w = g.inputs()[1];
  const ValueId z = g.outputs()[0];
  const ValueId o = testing::f32(g, g.add_value(ValueKind::kTensor, "o"), {4, 16});
  testing::add_costed_nodes(g, {{"aten::matmul", {z, w}, {o}}}, {o});
  return g;
}

// A shared user input is one host tensor, which every CPU device reading it uses as it is: each replica's
// peak holds it, the host once (two replicas of x @ w with a 4 MiB w: 8.16 MiB was predicted against 4.23
// measured). And a CPU device keeping several microbatches holds it once, where a GPU gets a copy with each.
TEST(HostMemory, ASharedInputIsOneHostTensor) {
  const Graph g = shared_matrix_graph();
  constexpr int64_t kShared = 16 * 1024 * 4;
  const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64), make_spec("gpu", 1)}, make_link(100, 0));
  const CostTable t = table_for(g, c);
  for (Mode mode : {Mode::kInference, Mode::kTraining}) {
    Plan p = data_plan(g, {"d0", "d1"}, {2, 2});
    p.mode = mode;
    p.global_batch = 4;
    const Simulation sim = simulate(p, g, c, t);
    Bytes working(0);
    for (const auto& d : sim.prediction.devices) {
      EXPECT_GE(d.peak_memory - d.model_state, Bytes(kShared)) << d.device;
      working += d.peak_memory - d.model_state;
    }
    EXPECT_EQ(only_host(sim).cpu_working, working - Bytes(kShared)) << static_cast<int>(mode);
  }
  // A pipeline whose second stage reads w again: that stage's figure does not count the graph's inputs, so
  // nothing is taken off (taking w off it once predicted 264 KiB against 4.30 MiB measured).
  {
    const Graph twice = shared_matrix_read_twice();
    const CostTable t2 = table_for(twice, c);
    Plan p = data_plan(twice, {"d0"}, {1});
    p.strategy = StrategyKind::kPipeline;
    p.global_batch = p.microbatches = 2;
    p.groups.push_back(DeviceGroup{{"d1"}, {1}, GroupParallelism::kData});
    p.stages = {Stage{0, 0, 0}, Stage{1, 2, 1}};
    const Simulation sim = simulate(p, twice, c, t2);
    EXPECT_GT(StageModel(twice, c, t2, SearchOptions{}).shared_input_once(0, 0), 0.0);
    EXPECT_EQ(only_host(sim).cpu_working, most_working_at_once(sim, p, twice, c, t2));
  }
  // Training, one device keeping 4 microbatches in flight (GPipe): w once on a CPU device, per microbatch
  // on a GPU.
  Plan p = data_plan(g, {"d0"}, {1});
  p.schedule = Schedule::kGPipe;
  p.global_batch = p.microbatches = 4;
  const Simulation on_cpu = simulate(p, g, c, t);
  p.groups[0].devices = {"d2"};
  const Simulation on_gpu = simulate(p, g, c, t);
  ASSERT_EQ(on_cpu.prediction.devices.size(), 1u);
  EXPECT_EQ(on_gpu.prediction.devices[0].peak_memory - on_cpu.prediction.devices[0].peak_memory,
            Bytes(3 * kShared));
}

// A training step of one microbatch runs a pipeline's forwards one after the other, then the backwards in
// reverse: while a stage runs, the earlier ones keep their activations for their backwards and the later ones
// hold nothing beyond their gradients. The zoo's cnn_train, 2 stages on cpu:0 + cpu:1, 8 samples: 3.46 MiB
// predicted as the sum, against 3.09 measured.
TEST(HostMemory, TrainingStagesOfOneMicrobatchPeakInTurn) {
  const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const auto working_of = [](const Simulation& sim, size_t k) {
    const DevicePrediction& d = sim.prediction.devices.at(k);
    return d.peak_memory - d.model_state;
  };
  const Graph g = tied_weight_graph();  // x -(E)-> a -(W)-> b -(E)-> y; a and b 400 bytes a sample
  const CostTable t = table_for(g, c);
  constexpr int64_t kHidden = 400;
  // Two stages, two samples: beside stage 1, stage 0 keeps x (its linear saves it) and a, which stage 1
  // received and counts; stage 0's backward holds the gradient of a that stage 1 returned, which its own
  // figure counts (StageModel's returned gradients: at its one node, as that node's output's gradient).
  Plan p = two_stage(g, "d0", "d1");
  p.microbatches = 1;
  for (DeviceGroup& group : p.groups) group.batch_shares = {2};
  const Simulation sim = simulate(p, g, c, t);
  const Bytes w0 = working_of(sim, 0), w1 = working_of(sim, 1);
  EXPECT_EQ(only_host(sim).cpu_working, std::max(w0, w1 + Bytes(2 * kX)));
  EXPECT_LT(only_host(sim).cpu_working, w0 + w1);
  // Three stages: beside stage 1, x (the gradient of b that stage 2 returns is in its figure); beside stage
  // 2, x and a (stage 0's result, which stage 1 saved: one storage); b is stage 2's input.
  Plan three = p;
  three.groups.push_back(DeviceGroup{{"d2"}, {2}, GroupParallelism::kData});
  three.stages = {Stage{0, 0, 0}, Stage{1, 1, 1}, Stage{2, 2, 2}};
  const Simulation sim3 = simulate(three, g, c, t);
  EXPECT_EQ(only_host(sim3).cpu_working, std::max({working_of(sim3, 0), working_of(sim3, 1) + Bytes(2 * kX),
                                                   working_of(sim3, 2) + Bytes(2 * (kX + kHidden))}));
  // Two microbatches: the stages run at once; what they hold adds up over time (the test below).
  Plan two = p;
  two.microbatches = 2;
  for (DeviceGroup& group : two.groups) group.batch_shares = {1};
  const Simulation sim2 = simulate(two, g, c, t);
  EXPECT_EQ(only_host(sim2).cpu_working, most_working_at_once(sim2, two, g, c, t));
}

// Training several microbatches, one process's CPU devices run at once but peak at different times: the host
// holds the most of their working memory added over the simulated step (most_working_at_once), which lies
// between the largest device's figure and the sum of their figures. (Branchy, 8 samples, a pipeline of 8
// microbatches on cpu:0 + cpu:1: 12.13 MiB predicted as the sum, 10.87 over time, 10.37 to 10.92 measured.)
TEST(HostMemory, CpuDevicesTrainingSeveralMicrobatchesAddUpOverTime) {
  const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const Graph g = tied_weight_graph();
  const CostTable t = table_for(g, c);
  bool below_the_sum = false;
  for (Schedule schedule : {Schedule::kGPipe, Schedule::kOneFOneB}) {
    for (int microbatches : {2, 4}) {
      for (int stages : {2, 3}) {
        Plan p = two_stage(g, "d0", "d1");
        if (stages == 3) {
          p.groups.push_back(DeviceGroup{{"d2"}, {1}, GroupParallelism::kData});
          p.stages = {Stage{0, 0, 0}, Stage{1, 1, 1}, Stage{2, 2, 2}};
        }
        p.schedule = schedule;
        p.global_batch = microbatches;
        p.microbatches = microbatches;
        const Simulation sim = simulate(p, g, c, t);
        Bytes sum(0), largest(0);
        for (const DevicePrediction& d : sim.prediction.devices) {
          sum += d.peak_memory - d.model_state;
          largest = std::max(largest, d.peak_memory - d.model_state);
        }
        const Bytes held = only_host(sim).cpu_working;
        const std::string where = std::to_string(stages) + " stages, " + std::to_string(microbatches) +
                                  " microbatches, " + std::string(schedule_name(schedule));
        EXPECT_EQ(held, most_working_at_once(sim, p, g, c, t)) << where;
        EXPECT_GE(held, largest) << where;
        EXPECT_LE(held, sum) << where;
        below_the_sum = below_the_sum || held < sum;
      }
    }
  }
  EXPECT_TRUE(below_the_sum);
}

// An inference step of one microbatch runs a pipeline's stages one after the other: the host holds the
// larger of their figures, not their sum, and beside a later stage's the step's inputs that the first
// stage's figure counted (the caller keeps them all step; a stage's figure lets a graph input die at its
// last reader). The zoo's MLP on cpu:0 + cpu:1: 128 KiB predicted as the sum, 64 + 8 KiB after, against
// 72-73 KiB measured beyond the weights.
TEST(HostMemory, InferenceStagesOfOneMicrobatchPeakInTurn) {
  const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const auto working_of = [](const Simulation& sim, size_t k) {
    const DevicePrediction& d = sim.prediction.devices.at(k);
    return d.peak_memory - d.model_state;
  };
  {
    // x (64 bytes a sample) is read by node 0 only: it is not in stage 1's figure.
    const Graph g = tied_weight_graph();
    const CostTable t = table_for(g, c);
    Plan p = two_stage(g, "d0", "d1", Mode::kInference);
    p.microbatches = 1;
    for (DeviceGroup& group : p.groups) group.batch_shares = {2};
    const Simulation sim = simulate(p, g, c, t);
    const Bytes w0 = working_of(sim, 0), w1 = working_of(sim, 1);
    EXPECT_GE(w0, Bytes(2 * kX));
    EXPECT_GT(w1 + Bytes(2 * kX), w0);  // here the later stage sets the figure
    EXPECT_EQ(only_host(sim).cpu_working, w1 + Bytes(2 * kX));
    EXPECT_LT(only_host(sim).cpu_working, w0 + w1);
    // Two microbatches: stage 0 runs the second while stage 1 runs the first.
    const Plan two = two_stage(g, "d0", "d1", Mode::kInference);
    const Simulation sim2 = simulate(two, g, c, t);
    EXPECT_EQ(only_host(sim2).cpu_working, working_of(sim2, 0) + working_of(sim2, 1));
  }
  {
    // A shared w read by both stages is in both figures and held once; x still dies before stage 1.
    const Graph twice = shared_matrix_read_twice();
    const CostTable t = table_for(twice, c);
    Plan p = data_plan(twice, {"d0"}, {4});
    p.mode = Mode::kInference;
    p.strategy = StrategyKind::kPipeline;
    p.global_batch = 4;
    p.groups.push_back(DeviceGroup{{"d1"}, {4}, GroupParallelism::kData});
    p.stages = {Stage{0, 0, 0}, Stage{1, 2, 1}};
    const Simulation sim = simulate(p, twice, c, t);
    constexpr int64_t kShared = 16 * 1024 * 4, kRows = 4 * 16 * 4;
    const Bytes w0 = working_of(sim, 0), w1 = working_of(sim, 1);
    EXPECT_GE(w1, Bytes(kShared));
    EXPECT_EQ(only_host(sim).cpu_working, std::max(w0, w1 + Bytes(kRows)));
    EXPECT_LT(only_host(sim).cpu_working, w0 + w1 - Bytes(kShared));
  }
}

TEST(HostMemory, InferenceGathersTheOutputsOfAGpuOnTheHost) {
  const Graph g = tied_weight_graph();
  const Cluster c = gpus_and_cpu();
  const CostTable t = table_for(g, c);
  const Simulation sim = simulate(two_stage(g, "d0", "d1", Mode::kInference), g, c, t);
  const HostPrediction& h = only_host(sim);
  EXPECT_EQ(h.model_state, Bytes(kE + kW));  // the engine leaves the model's tensors alone in inference
  // y is 10 floats per sample (the graph is built for one); batch 2; twice while the pieces are alive.
  EXPECT_EQ(h.gathered_outputs, Bytes(2 * 2 * 10 * 4));
  EXPECT_EQ(h.peak_memory, h.model_state + Bytes(2 * kX) + h.gathered_outputs);
}

TEST(HostMemory, OffloadedActivationsWaitOnTheHostBetweenForwardAndBackward) {
  // offload_pair_graph: a stage of layers 0-1 saves 4 MiB per sample that die inside it.
  const Graph g = testing::offload_pair_graph();
  const Cluster c = gpus_and_cpu();
  const CostTable t = table_for(g, c);
  Plan p = base_plan(g, Mode::kTraining);
  p.strategy = StrategyKind::kPipeline;
  p.schedule = Schedule::kGPipe;
  p.global_batch = 4;
  p.microbatches = 4;
  p.groups = {DeviceGroup{{"d0"}, {1}, GroupParallelism::kData},
              DeviceGroup{{"d1"}, {1}, GroupParallelism::kData}};
  p.stages = {Stage{0, 1, 0, Checkpointing::kNone, Offload::kActivations}, Stage{2, 2, 1}};
  Simulation sim = simulate(p, g, c, t);
  // GPipe: all four forwards end before the first backward starts, so all four microbatches' copies are
  // on the host at once.
  EXPECT_EQ(only_host(sim).offloaded_activations, Bytes(4 * (int64_t{4} << 20)));
  // 1F1B on two stages keeps at most two microbatches in flight on stage 0.
  p.schedule = Schedule::kOneFOneB;
  sim = simulate(p, g, c, t);
  EXPECT_EQ(only_host(sim).offloaded_activations, Bytes(2 * (int64_t{4} << 20)));
  // Checkpointing instead recomputes on the device: nothing on the host.
  p.stages[0].offload = Offload::kNone;
  p.stages[0].checkpointing = Checkpointing::kFull;
  sim = simulate(p, g, c, t);
  EXPECT_EQ(only_host(sim).offloaded_activations, Bytes(0));
}

TEST(HostMemory, EachMachineLoadsTheModelAndKeepsTheStateOfWhatItsDevicesRead) {
  const Graph g = tied_weight_graph();
  Cluster c;
  c.name = "two machines";
  c.devices = {ClusterDevice{"a/gpu", "a", make_spec("gpu", 1)},
               ClusterDevice{"b/gpu", "b", make_spec("gpu", 1)}, ClusterDevice{"a/cpu", "a", cpu_spec(16)}};
  c.intra_node_link = make_link(100, 0);
  c.inter_node_link = make_link(10, 0);
  const CostTable t = table_for(g, c);
  const Simulation sim = simulate(two_stage(g, "a/gpu", "b/gpu"), g, c, t);
  ASSERT_EQ(sim.prediction.hosts.size(), 2u);
  const HostPrediction& a = sim.prediction.hosts[0];
  const HostPrediction& b = sim.prediction.hosts[1];
  EXPECT_EQ(a.node, "a");
  EXPECT_EQ(b.node, "b");
  // Machine a: E with its state (both machines read it), and W as loaded (it lives on b's GPU, trained
  // there).
  EXPECT_EQ(a.model_state, Bytes(adam(kE) + kW));
  EXPECT_EQ(b.model_state, Bytes(adam(kE)));
  EXPECT_EQ(a.capacity, Bytes(int64_t{16} << 30));
  EXPECT_EQ(b.capacity, Bytes(0));  // no CPU described on b: not checked
  EXPECT_TRUE(sim.fits_host_memory);
}

// The links between processes a launched plan's simulation needs (their speed does not matter here).
SearchOptions launched_options() {
  SearchOptions o;
  o.processes = ProcessLayout::kLaunch;
  o.process_links = ProcessLinks{make_link(10, 0), make_link(10, 0)};
  return o;
}

Plan launched(Plan p) {
  p.processes = ProcessLayout::kLaunch;
  return p;
}

// Under `partita launch` every replica of a one-stage plan is a process that loads the whole model and
// trains it: the machine holds the model state once per process, not once (each rank of GPT 8x128
// inference measured 20.69 MiB, 41.4 together, against 32.2 predicted for one process).
TEST(HostMemory, LaunchedReplicasEachHoldTheWholeModel) {
  const Graph g = tied_weight_graph();
  const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const CostTable t = table_for(g, c);
  const Simulation threads = simulate(data_plan(g, {"d0", "d1"}, {1, 1}), g, c, t);
  EXPECT_EQ(only_host(threads).model_state, Bytes(adam(kE) + adam(kW)));
  EXPECT_TRUE(only_host(threads).processes.empty());
  const Simulation sim = simulate(launched(data_plan(g, {"d0", "d1"}, {1, 1})), g, c, t, launched_options());
  const HostPrediction& h = only_host(sim);
  EXPECT_EQ(h.model_state, Bytes(2 * (adam(kE) + adam(kW))));
  ASSERT_EQ(h.processes.size(), 2u);
  EXPECT_EQ(h.processes[0].rank, 0);
  EXPECT_EQ(h.processes[1].rank, 1);
  EXPECT_EQ(h.processes[0].peak_memory, h.processes[1].peak_memory);
  EXPECT_EQ(h.peak_memory, h.processes[0].peak_memory + h.processes[1].peak_memory);
  // Each process: its model state beside the larger of its device's working memory and Adam's temporaries.
  ASSERT_EQ(sim.prediction.devices.size(), 2u);
  const DevicePrediction& d = sim.prediction.devices[0];
  // Each process makes the whole batch and its device counts its own sample of it: the other is its
  // process's.
  EXPECT_EQ(h.processes[0].peak_memory,
            Bytes(adam(kE) + adam(kW) + kX + kT) + std::max(d.peak_memory - d.model_state, Bytes(2 * kW)));
}

// A launched replica's gradients live in the reducer's buckets from the second step on: all of them exist
// when its backward starts, where one process's first backward has made none yet.
TEST(HostMemory, LaunchedReplicasHoldEveryGradientAllStep) {
  // The chain of CpuReplicasLeaveOutTheGradientsNotMadeYetOnce: no gradient (4080 bytes) is made yet at
  // the backward's peak, the loss's.
  const Graph g = testing::chain_graph({1e9, 1e9, 1e9}, {10, 10, 4000}, {1000, 10, 10});
  const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const CostTable t = table_for(g, c);
  const Simulation threads = simulate(data_plan(g, {"d0", "d1"}, {1, 1}), g, c, t);
  const Simulation sim = simulate(launched(data_plan(g, {"d0", "d1"}, {1, 1})), g, c, t, launched_options());
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(sim.prediction.devices[k].peak_memory, threads.prediction.devices[k].peak_memory + Bytes(4080))
        << k;
  }
  // Nothing is added into shared gradients: each process's working memory is its device's.
  const DevicePrediction& d = sim.prediction.devices[0];
  EXPECT_EQ(only_host(sim).cpu_working, (d.peak_memory - d.model_state) * 2.0);
}

// A later microbatch's gradient of a weight is made afresh while backward passes the weight's reader, after
// the loss's backward; the device's figure holds it there, not beside the loss's (a 64-64-4096 MLP, cpu:0,
// 4 microbatches, MSE: 10.17 MiB measured, 11.17 predicted with the copy of its 1 MiB weight beside the
// loss's backward; bench/loss_target_memory.sh). The host adds nothing for it.
TEST(HostMemory, ALaterMicrobatchsFreshGradientCountsAtItsReadersBackward) {
  // x -> n0 (w0 of `w0` floats) -> y0 (40 bytes a sample) -> n1 (w1, 40) -> y1 (40) -> n2 (w2, 40) -> y2
  // (`out` floats): one sample a microbatch, 2 microbatches a step.
  const auto check = [](int64_t w0, int64_t out, int replicas, bool launch) {
    const Graph g = testing::chain_graph({1e9, 1e9, 1e9}, {10, 10, out}, {w0, 10, 10});
    const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
    const CostTable t = table_for(g, c);
    Plan p =
        data_plan(g, replicas == 1 ? std::vector<std::string>{"d0"} : std::vector<std::string>{"d0", "d1"},
                  std::vector<int>(static_cast<size_t>(replicas), 1));
    p.microbatches = 2;
    p.global_batch = 2 * replicas;
    if (launch) p = launched(p);
    const Simulation sim = simulate(p, g, c, t, launch ? launched_options() : SearchOptions{});
    // Each device runs one microbatch at a time and peaks in its second: one microbatch's activations (x
    // 64, y0 and y1 40 each, the loss's tensor of y2's size and the 8-byte target) and the larger of the
    // loss's backward (2 of y2's size) and n0's (y0's gradient and w0's made afresh, less y1 and the loss's
    // tensor, which backward freed before it; y0, n0's output, counts until n0's backward). (n1's and n2's
    // are smaller; in the first backward no gradient is made afresh; launched, every backward is a later
    // one.)
    const int64_t act = 64 + 80 + 4 * out + 8;
    const int64_t at_n0 = 40 + 4 * w0 - 40 - 4 * out;
    Bytes working(0);
    for (const auto& d : sim.prediction.devices) {
      EXPECT_EQ(d.peak_memory - d.model_state, Bytes(act + std::max(2 * 4 * out, at_n0)))
          << w0 << " " << out << " " << replicas << " " << launch << " " << d.device;
      working += d.peak_memory - d.model_state;
    }
    EXPECT_EQ(only_host(sim).cpu_working, working) << w0 << " " << out << " " << replicas << " " << launch;
  };
  for (int replicas : {1, 2}) {
    for (bool launch : {false, true}) {
      if (launch && replicas == 1) continue;
      check(3000, 1000, replicas, launch);  // the copy fits below the loss's backward
      check(5000, 1000, replicas, launch);  // it does not: n0's backward is the peak
    }
  }
}

// A launched pipeline's rank keeps the weights its stage reads: a weight two stages read (the reducer sums
// its gradient) on every rank that reads it, one only a GPU stage reads on that GPU.
TEST(HostMemory, ALaunchedPipelineRankKeepsWhatItsStageReads) {
  const Graph g = tied_weight_graph();
  const Cluster cpus = make_cluster({cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const Simulation on_cpus =
      simulate(launched(two_stage(g, "d0", "d1")), g, cpus, table_for(g, cpus), launched_options());
  const HostPrediction& h = only_host(on_cpus);
  EXPECT_EQ(h.model_state, Bytes(adam(kE) + adam(kE) + adam(kW)));
  ASSERT_EQ(h.processes.size(), 2u);
  Bytes working(0);
  for (const auto& d : on_cpus.prediction.devices) working += d.peak_memory - d.model_state;
  // Each stage's second microbatch adds a fresh copy of its weights' gradients: in its device's figure.
  EXPECT_EQ(h.cpu_working, working);
  const Cluster gpus = gpus_and_cpu(64);
  const Simulation on_gpus =
      simulate(launched(two_stage(g, "d0", "d1")), g, gpus, table_for(g, gpus), launched_options());
  EXPECT_EQ(only_host(on_gpus).model_state, Bytes(2 * adam(kE)));  // W lives on d1
}

// A launched pipeline's rank keeps, between steps, only the gradients in the reducer's buckets (the weights
// several stages read) and sets the others to none as one process does (Engine::step): a one-microbatch
// step's first backward starts without them there too, so each device's figure is the one-process plan's.
// (Counting every gradient from the start, a launched GPT pipeline's second rank was predicted at 162.72 MiB
// where it held 146.50.)
TEST(HostMemory, ALaunchedPipelineRankMakesItsStagesGradientsAsOneProcessDoes) {
  const Graph g = tied_weight_graph();
  const Cluster cpus = make_cluster({cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  Plan p = two_stage(g, "d0", "d1");
  p.global_batch = 1;
  p.microbatches = 1;
  const Simulation threads = simulate(p, g, cpus, table_for(g, cpus));
  const Simulation sim = simulate(launched(p), g, cpus, table_for(g, cpus), launched_options());
  ASSERT_EQ(sim.prediction.devices.size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(sim.prediction.devices[k].peak_memory, threads.prediction.devices[k].peak_memory) << k;
  }
}

// The machine's processes add up against its capacity: a data-parallel plan that fits as two threads of one
// process is refused as two processes, and the note says so.
TEST(HostMemory, LaunchedProcessesAddUpAgainstTheMachinesMemory) {
  const Graph g = testing::offload_pair_graph();  // about 2 MiB of weights: 8 MiB with Adam
  const Cluster c = make_cluster({cpu_spec(30.0 / 1024), cpu_spec(30.0 / 1024)}, make_link(100, 0));
  const CostTable t = table_for(g, c);
  const Simulation threads = simulate(data_plan(g, {"d0", "d1"}, {1, 1}), g, c, t);
  ASSERT_TRUE(threads.fits_host_memory) << threads.host_memory_note;
  const Simulation sim = simulate(launched(data_plan(g, {"d0", "d1"}, {1, 1})), g, c, t, launched_options());
  EXPECT_FALSE(sim.fits_host_memory);
  EXPECT_NE(sim.host_memory_note.find("machine node0"), std::string::npos) << sim.host_memory_note;
  EXPECT_NE(sim.host_memory_note.find("2 processes"), std::string::npos) << sim.host_memory_note;
  EXPECT_NE(sim.host_memory_note.find("weights, gradients and optimizer state 16.00 MiB"), std::string::npos)
      << sim.host_memory_note;
}

// A launched tensor group's rank keeps its part of each split weight, the replicated ones whole, and in
// backward receives its peer's part of the gradient of the scale's output, which enters the pair (16 floats
// here: the pair's forward all-reduce of 1024 floats meets the forward, not the peak).
TEST(HostMemory, ALaunchedTensorRankKeepsItsPartsOfTheSplitWeights) {
  constexpr int64_t kFloats = 1024, kScale = 64, kSplit = 65536 + kFloats * 1024 * 4;
  const Graph g = testing::scaled_pair_graph(kFloats);
  const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const CostTable t = table_for(g, c);
  Plan p = data_plan(g, {"d0", "d1"}, {1, 1});
  p.strategy = StrategyKind::kTensor;
  p.global_batch = 1;
  p.groups[0] = DeviceGroup{{"d0", "d1"}, {1, 1}, GroupParallelism::kTensor, 2};
  const Simulation threads = simulate(p, g, c, t);
  const Simulation sim = simulate(launched(p), g, c, t, launched_options());
  const HostPrediction& h = only_host(sim);
  ASSERT_EQ(h.processes.size(), 2u);
  EXPECT_EQ(h.model_state, Bytes(2 * adam(kScale + kSplit / 2)));
  // Against one process's devices: the backward starts with the replicated weights' gradients there (the
  // reducer's buckets keep them) and none of the parts' (TensorModel::GradientsAtStart::kReplicated), and the
  // peer's part of the entering gradient arrives.
  SearchOptions o;
  o.mode = Mode::kTraining;
  o.optimizer = Optimizer::kAdam;
  const StageModel model(g, c, t, o);
  const TensorModel tm(model);
  constexpr int64_t kEntering = 16 * 4;
  ASSERT_EQ(tm.received_parts(0, 2, 1, 2), Bytes(kEntering));
  const double none_there = tm.backward_peak(0, 2, 1, 2, There::kNone).beyond_state;
  const double replicated_there = tm.backward_peak(0, 2, 1, 2, There::kReplicated).beyond_state - none_there;
  const double all_there = tm.backward_peak(0, 2, 1, 2, There::kAll).beyond_state - none_there;
  // The replicated scale's gradient (kScale bytes) is there at the peak, the split weight's part is not.
  EXPECT_EQ(replicated_there, kScale);
  EXPECT_GT(all_there, replicated_there);
  EXPECT_EQ(tm.backward_peak(0, 2, 1, 2, There::kReplicated).unmade_replicated, Bytes(0));
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(sim.prediction.devices[k].model_state, Bytes(adam(kScale + kSplit / 2)));
    EXPECT_EQ(sim.prediction.devices[k].peak_memory, threads.prediction.devices[k].peak_memory +
                                                         Bytes(static_cast<int64_t>(replicated_there)) +
                                                         Bytes(kEntering))
        << k;
  }
  // Two microbatches: every gradient is there from the second backward on, in one process and launched alike
  // (the rank's parts of the split weights gather theirs in leaves of their own, engine_tensor, in place of
  // the parameters' gradients, which it keeps none of); the peer's part of the entering gradient arrives.
  p.global_batch = 2;
  p.microbatches = 2;
  const Simulation threads2 = simulate(p, g, c, t);
  const Simulation launched2 = simulate(launched(p), g, c, t, launched_options());
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(launched2.prediction.devices[k].peak_memory,
              threads2.prediction.devices[k].peak_memory + Bytes(kEntering))
        << k;
  }
}

// The caller makes the step's whole batch, inputs and targets, and keeps it all step; a CPU device whose
// stage starts the graph counts its rows of one microbatch of the inputs, one whose stage ends it its rows of
// the targets: the rest of the batch is its process's (a launched CNN 8x3x32x32 data rank held 48 KiB over
// the prediction with 1 microbatch and 84 KiB more with 4, before the inputs were counted; a launched
// pipeline's first rank training a 64-to-4096 MLP with MSE, 4 MiB over, before the targets were).
TEST(HostMemory, TheStepsBatchBeyondTheRowsTheDevicesCountIsTheProcesss) {
  const Graph g = tied_weight_graph();
  const Cluster c = make_cluster({cpu_spec(64), cpu_spec(64)}, make_link(100, 0));
  const CostTable t = table_for(g, c);
  // Two replicas in one process, one microbatch: their rows are the whole batch.
  Plan replicas = data_plan(g, {"d0", "d1"}, {2, 2});
  replicas.global_batch = 4;
  EXPECT_EQ(only_host(simulate(replicas, g, c, t)).step_batch, Bytes(0));
  // One device, 4 microbatches of 1: 3 of the 4 samples are beyond its figure.
  Plan alone = data_plan(g, {"d0"}, {1});
  alone.global_batch = 4;
  alone.microbatches = 4;
  EXPECT_EQ(only_host(simulate(alone, g, c, t)).step_batch, Bytes(3 * (kX + kT)));
  // Trained with MSE the targets are float32 copies of the output, 10 floats a sample.
  SearchOptions mse;
  mse.loss = LossKind::kMse;
  alone.loss = LossKind::kMse;
  EXPECT_EQ(only_host(simulate(alone, g, c, t, mse)).step_batch, Bytes(3 * (kX + 10 * 4)));
  // Inference has no targets.
  Plan inference = alone;
  inference.mode = Mode::kInference;
  EXPECT_EQ(only_host(simulate(inference, g, c, t)).step_batch, Bytes(3 * kX));
  // Launched, each of the two processes makes all 4 samples and its device counts its 2.
  const Simulation sim = simulate(launched(replicas), g, c, t, launched_options());
  const HostPrediction& h = only_host(sim);
  EXPECT_EQ(h.step_batch, Bytes(2 * 2 * (kX + kT)));
  ASSERT_EQ(h.processes.size(), 2u);
  EXPECT_EQ(h.processes[0].peak_memory,
            Bytes(2 * (kX + kT)) + Bytes(adam(kE) + adam(kW)) +
                std::max(sim.prediction.devices[0].peak_memory - sim.prediction.devices[0].model_state,
                         Bytes(2 * kW)));
  // A pipeline: stage 0 counts its microbatch's rows of the inputs and no targets, stage 1 the reverse.
  Plan pipeline = two_stage(g, "d0", "d1");
  pipeline.global_batch = 4;
  pipeline.groups[0].batch_shares = {2};
  pipeline.groups[1].batch_shares = {2};
  EXPECT_EQ(only_host(simulate(pipeline, g, c, t)).step_batch, Bytes(2 * kX + 2 * kT));
  // Launched: rank 0 holds 2 samples of inputs beyond its rows and all 4 targets, rank 1 all 4 inputs and 2
  // targets beyond its rows.
  const Simulation ranks = simulate(launched(pipeline), g, c, t, launched_options());
  EXPECT_EQ(only_host(ranks).step_batch, Bytes((2 * kX + 4 * kT) + (4 * kX + 2 * kT)));
  // The last stage on a GPU: its targets are copies there, the whole batch's stay on the host.
  const Cluster mixed = make_cluster({cpu_spec(64), make_spec("gpu", 1)}, make_link(100, 0));
  const CostTable tm = table_for(g, mixed);
  EXPECT_EQ(only_host(simulate(pipeline, g, mixed, tm)).step_batch, Bytes(2 * kX + 4 * kT));
}

TEST(HostMemory, APlanOverItsHostMemoryIsMarkedAndNamed) {
  const Graph g = testing::offload_pair_graph();  // about 2 MiB of weights: 8 MiB with Adam
  const Cluster c = gpus_and_cpu(4.0 / 1024);     // a 4 MiB host
  const CostTable t = table_for(g, c);
  const Plan data = data_plan(g, {"d0", "d1"}, {1, 1});
  const Simulation sim = simulate(data, g, c, t);
  EXPECT_TRUE(sim.fits_memory);  // the devices are fine
  EXPECT_FALSE(sim.fits_host_memory);
  EXPECT_NE(sim.host_memory_note.find("machine node0"), std::string::npos) << sim.host_memory_note;
  EXPECT_NE(sim.host_memory_note.find("weights, gradients and optimizer state 8.00 MiB"), std::string::npos)
      << sim.host_memory_note;
}

TEST(HostMemory, ThePlannerReturnsOnlyPlansThatFitTheirHosts) {
  const Graph g = testing::offload_pair_graph();  // about 2 MiB of weights: 8 MiB with Adam
  SearchOptions o;
  o.mode = Mode::kTraining;
  o.global_batch = 2;
  // With a roomy host the fastest plan is data parallel on the two GPUs, which keeps all 8 MiB there, and
  // Adam's step holds two temporaries of a 1 MiB weight while it updates it.
  const Cluster roomy = gpus_and_cpu(64);
  const PlanOutcome free = make_plan(g, roomy, table_for(g, roomy), o);
  ASSERT_TRUE(free.plan) << free.error;
  ASSERT_EQ(free.plan->strategy, StrategyKind::kData);
  ASSERT_EQ(free.plan->prediction.hosts.size(), 1u);
  EXPECT_EQ(free.plan->prediction.hosts[0].peak_memory,
            Bytes(4 * ((int64_t{2} << 20) + 64) + 2 * (int64_t{1} << 20) + 2 * (64 + 8)));  // + the batch
  // A 2 MiB host: a GPU pipeline that keeps every weight on its own device (nothing on the host) wins.
  const Cluster tight = gpus_and_cpu(2.0 / 1024);
  const PlanOutcome fitted = make_plan(g, tight, table_for(g, tight), o);
  ASSERT_TRUE(fitted.plan) << fitted.error;
  EXPECT_EQ(fitted.plan->strategy, StrategyKind::kPipeline);
  EXPECT_LT(fitted.candidates.size(), free.candidates.size());
  for (const Plan& p : fitted.candidates) {
    ASSERT_EQ(p.prediction.hosts.size(), 1u);
    EXPECT_LE(p.prediction.hosts[0].peak_memory, Bytes(int64_t{2} << 20)) << p.to_string();
  }
  // Inference leaves the model's tensors on the host whatever the plan: no plan fits a 1 MiB host, and the
  // planner says so in one line naming the machine.
  o.mode = Mode::kInference;
  const Cluster tiny = gpus_and_cpu(1.0 / 1024);
  const PlanOutcome none = make_plan(g, tiny, table_for(g, tiny), o);
  EXPECT_FALSE(none.plan);
  EXPECT_NE(none.error.find("no plan fits in host memory"), std::string::npos) << none.error;
  EXPECT_NE(none.error.find("machine node0"), std::string::npos) << none.error;
}

}  // namespace
}  // namespace partita

#include "partita/search/stage_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <tuple>

#include "partita/core/error.h"
#include "partita/search/planner.h"
#include "partita/search/simulator.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

TEST(StageModel, PrefixSumsMatchTheCostTable) {
  const Graph g = chain_graph({1e9, 2e9, 3e9}, {10, 20, 30}, {100, 200, 300}, 4);
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("b", 2)}, make_link(10));
  const CostTable t = table_for(g, c);
  const StageModel m(g, c, t, SearchOptions{});
  EXPECT_EQ(m.graph_batch(), 4);
  const int spec = m.spec_of(1);
  EXPECT_NEAR(m.forward(spec, 1, 2, 4).value(), (t.times[spec][1].forward + t.times[spec][2].forward).value(),
              1e-15);
  EXPECT_NEAR(m.backward(spec, 0, 0, 2).value(), t.times[spec][0].backward.value() / 2, 1e-15);
  EXPECT_EQ(m.parameter_bytes(0, 2), Bytes(4 * 600));
  EXPECT_EQ(m.trainable_bytes(1, 1), Bytes(4 * 200));
  EXPECT_DOUBLE_EQ(m.boundary(0).per_sample, 40);  // y0: 10 floats per sample
  EXPECT_DOUBLE_EQ(m.boundary(2).per_sample, 0);
  EXPECT_EQ(m.boundary_bytes(1, 3), Bytes(3 * 80));
}

// The same model over other links (a launched plan's processes): its costs stay, its cluster is the new one;
// a cluster of other devices is refused.
TEST(StageModel, OverOtherLinksKeepsItsCostsAndRefusesOtherDevices) {
  const Graph g = chain_graph({1e9, 2e9}, {10, 20}, {100, 200}, 4);
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("b", 2)}, make_link(10));
  const CostTable t = table_for(g, c);
  const StageModel m(g, c, t, SearchOptions{});
  Cluster slow = c;
  slow.intra_node_link = make_link(0.001, 500);
  const StageModel over = m.over_links_of(slow);
  EXPECT_EQ(&over.cluster(), &slow);
  EXPECT_EQ(over.cluster().link_between("d0", "d1").latency, Seconds(500e-6));
  EXPECT_EQ(over.forward(over.spec_of(1), 0, 1, 4), m.forward(m.spec_of(1), 0, 1, 4));
  EXPECT_EQ(over.boundary_bytes(0, 2), m.boundary_bytes(0, 2));
  Cluster swapped = c;
  std::swap(swapped.devices[0].spec, swapped.devices[1].spec);
  EXPECT_THROW((void)m.over_links_of(swapped), Error);
  Cluster fewer = c;
  fewer.devices.pop_back();
  EXPECT_THROW((void)m.over_links_of(fewer), Error);
}

// A node's fixed part (per call) is paid by every microbatch in full; the rest scales with its samples. At
// the graph's batch the model gives the table's times back.
TEST(StageModel, FixedPartsArePaidPerRunTheRestPerSample) {
  const Graph g = chain_graph({1e9, 2e9, 3e9}, {10, 20, 30}, {100, 200, 300}, 4);
  const Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  CostTable t = table_for(g, c);
  for (NodeTimes& n : t.times[0]) {  // 1 ms of launches forward, 2 ms backward, per node
    n.forward = n.forward + Seconds(1e-3);
    n.forward_fixed = Seconds(1e-3);
    n.backward = n.backward + Seconds(2e-3);
    n.backward_fixed = Seconds(2e-3);
  }
  const StageModel m(g, c, t, SearchOptions{});
  const NodeTimes all = t.range_total(0, 0, 2);
  EXPECT_NEAR(m.forward(0, 0, 2, 4).value(), all.forward.value(), 1e-15);
  EXPECT_NEAR(m.backward(0, 0, 2, 4).value(), all.backward.value(), 1e-15);
  EXPECT_NEAR(m.forward_fixed(0, 1, 2).value(), 2e-3, 1e-15);
  EXPECT_NEAR(m.forward_per_sample(0, 1, 2).value(), (5e9 / 1e12), 1e-15);  // 1 TFLOP/s, no overhead spec
  // One sample: both nodes' launches plus a quarter of their work.
  EXPECT_NEAR(m.forward(0, 1, 2, 1).value(), 2e-3 + 5e9 / 1e12, 1e-15);
  EXPECT_NEAR(m.backward(0, 0, 0, 1).value(), 2e-3 + (t.times[0][0].backward.value() - 2e-3) / 4, 1e-15);
  // The device's speed is its time per sample at the graph's batch.
  SearchOptions training;
  training.mode = Mode::kTraining;
  const StageModel mt(g, c, t, training);
  EXPECT_NEAR(mt.sample_time(0).value(), (all.forward + all.backward).value() / 4, 1e-15);
}

// forward(x) = x @ (W + A @ B), a low-rank update merged into its weight: the product and the sum read
// weights alone, so every replica and microbatch computes them whole however few its samples; only x @ (...)
// scales.
TEST(StageModel, ANodeWithoutTheBatchIsPaidWholeByEveryRun) {
  Graph g;
  const auto tensor = [&](ValueId v, std::vector<int64_t> shape) {
    g.value(v).tensors = {TensorMeta{std::move(shape), DType::kFloat32}};
    return v;
  };
  const ValueId x = tensor(g.add_input("x"), {4, 16});
  const ValueId w = tensor(g.add_parameter("W", true), {16, 16});
  const ValueId a = tensor(g.add_parameter("A", true), {16, 4});
  const ValueId b = tensor(g.add_parameter("B", true), {4, 16});
  const ValueId ab = tensor(g.add_value(ValueKind::kTensor, "ab"), {16, 16});
  const ValueId merged = tensor(g.add_value(ValueKind::kTensor, "merged"), {16, 16});
  const ValueId y = tensor(g.add_value(ValueKind::kTensor, "y"), {4, 16});
  const std::vector<NodeId> nodes = {g.add_node("aten::matmul", {a, b}, {ab}),
                                     g.add_node("aten::add", {w, ab}, {merged}),
                                     g.add_node("aten::matmul", {x, merged}, {y})};
  for (NodeId n : nodes) g.node(n).cost = OpCost{Flops(2e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.set_outputs({y});
  const Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  const CostTable t = table_for(g, c);
  SearchOptions training;
  training.mode = Mode::kTraining;
  const StageModel m(g, c, t, training);
  ASSERT_EQ(m.graph_batch(), 4);
  const NodeTimes weights_only = t.range_total(0, 0, 1);
  ASSERT_GT(weights_only.forward.value(), 0);
  for (double samples : {1.0, 2.0, 4.0}) {
    EXPECT_NEAR(m.forward(0, 0, 1, samples).value(), weights_only.forward.value(), 1e-15) << samples;
    EXPECT_NEAR(m.backward(0, 0, 1, samples).value(), weights_only.backward.value(), 1e-15) << samples;
  }
  const NodeTimes& batched = t.times[0][2];
  EXPECT_NEAR(m.forward(0, 2, 2, 1).value(),
              (batched.forward_fixed + (batched.forward - batched.forward_fixed) / 4).value(), 1e-15);
  // Two replicas of 2 samples: each pays the merge whole and half of x @ (...).
  EXPECT_NEAR(
      m.forward(0, 0, 2, 2).value(),
      (weights_only.forward + batched.forward_fixed + (batched.forward - batched.forward_fixed) / 2).value(),
      1e-15);
}

// The merged weight W + A @ B does not depend on the batch: every replica and microbatch holds it whole (it
// was counted as 1/4 per sample of the graph's 4, so two replicas of 2 were predicted to hold half of it).
// A shared user input (x @ w, w shared) is in a range's input, so in every microbatch's activations; a CPU
// device keeping several holds the caller's one tensor, a GPU a copy with each (engine.cpp moves it).
TEST(StageModel, ACpuDeviceHoldsASharedInputOnce) {
  using testing::f32;
  Graph g;
  const ValueId x = f32(g, g.add_input("x"), {4, 16});
  const ValueId w = f32(g, g.add_input("w"), {16, 1024});  // 64 KiB
  g.value(w).shared = true;
  const ValueId y = f32(g, g.add_value(ValueKind::kTensor, "y"), {4, 1024});
  const ValueId z = f32(g, g.add_value(ValueKind::kTensor, "z"), {4, 1024});
  testing::add_costed_nodes(g, {{"aten::matmul", {x, w}, {y}}, {"aten::relu", {y}, {z}}}, {z});
  DeviceSpec cpu = make_spec("cpu", 1);
  cpu.kind = DeviceKind::kCpu;
  const Cluster c = make_cluster({cpu, make_spec("gpu", 1)}, make_link(10));
  const CostTable t = table_for(g, c);
  SearchOptions training;
  training.mode = Mode::kTraining;
  const StageModel model(g, c, t, training);
  EXPECT_DOUBLE_EQ(model.input(0).fixed, 65536);
  EXPECT_DOUBLE_EQ(model.shared_input_once(0, 0), 65536);
  EXPECT_DOUBLE_EQ(model.shared_input_once(0, 1), 0);   // the GPU
  EXPECT_DOUBLE_EQ(model.shared_input_once(1, 0), 0);   // a range after the start
  EXPECT_DOUBLE_EQ(model.shared_input_once(0, -1), 0);  // device not known
  for (Checkpointing checkpointing : {Checkpointing::kNone, Checkpointing::kFull}) {
    const auto memory = [&](int device, int in_flight) {
      StageLoad load{0, 1, 1, in_flight, checkpointing};
      load.device = device;
      return static_cast<double>(model.memory(load).value());
    };
    // Three more microbatches in flight: the GPU holds three more copies of w, the CPU none.
    EXPECT_DOUBLE_EQ((memory(1, 4) - memory(1, 1)) - (memory(0, 4) - memory(0, 1)), 3 * 65536.0)
        << static_cast<int>(checkpointing);
  }
}

TEST(StageModel, AStorageWithoutTheBatchIsHeldWholeByEveryRun) {
  Graph g;
  const auto tensor = [&](ValueId v, std::vector<int64_t> shape) {
    g.value(v).tensors = {TensorMeta{std::move(shape), DType::kFloat32}};
    return v;
  };
  const ValueId x = tensor(g.add_input("x"), {4, 16});  // 64 bytes per sample, as y and z
  const ValueId w = tensor(g.add_parameter("W", true), {16, 16});
  const ValueId a = tensor(g.add_parameter("A", true), {16, 4});
  const ValueId b = tensor(g.add_parameter("B", true), {4, 16});
  const ValueId ab = tensor(g.add_value(ValueKind::kTensor, "ab"), {16, 16});          // 1024 whole
  const ValueId merged = tensor(g.add_value(ValueKind::kTensor, "merged"), {16, 16});  // 1024 whole
  const ValueId y = tensor(g.add_value(ValueKind::kTensor, "y"), {4, 16});
  const ValueId z = tensor(g.add_value(ValueKind::kTensor, "z"), {4, 16});
  // y @ merged needs merged for y's gradient: saved (x @ merged saves only x: x gets no gradient).
  for (NodeId n :
       {g.add_node("aten::matmul", {a, b}, {ab}), g.add_node("aten::add", {w, ab}, {merged}),
        g.add_node("aten::matmul", {x, merged}, {y}), g.add_node("aten::matmul", {y, merged}, {z})})
    g.node(n).cost = OpCost{Flops(2e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.set_outputs({z});
  const Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  const CostTable t = table_for(g, c);
  const double weights = 1024 + 256 + 256;

  SearchOptions inference;
  inference.mode = Mode::kInference;
  const StageModel infer(g, c, t, inference);
  EXPECT_DOUBLE_EQ(infer.input(0).per_sample, 64);
  EXPECT_DOUBLE_EQ(infer.input(0).fixed, 0);
  EXPECT_DOUBLE_EQ(infer.boundary(1).per_sample, 0);  // merged crosses the add's end whole
  EXPECT_DOUBLE_EQ(infer.boundary(1).fixed, 1024);
  EXPECT_DOUBLE_EQ(infer.boundary(2).per_sample, 64);  // merged and y
  EXPECT_EQ(infer.boundary_bytes(2, 2), Bytes(1024 + 128));
  // Alive at the add: x, ab and merged; at each later matmul two per-sample tensors and merged. Which is the
  // peak depends on the samples.
  EXPECT_DOUBLE_EQ(infer.live_peak(0, 3, 1), 64 + 2048);
  EXPECT_DOUBLE_EQ(infer.live_peak(0, 3, 32), 128 * 32 + 1024);
  EXPECT_DOUBLE_EQ(infer.live_peak(2, 3, 1), 128 + 1024);
  for (int samples : {1, 2, 4}) {
    EXPECT_EQ(infer.memory(StageLoad{0, 3, samples}),
              Bytes(static_cast<int64_t>(weights + 64 * samples + 2048)))
        << samples;
  }

  SearchOptions training;
  training.mode = Mode::kTraining;
  const StageModel train(g, c, t, training);
  EXPECT_DOUBLE_EQ(train.saved(0, 1).per_sample, 0);
  EXPECT_DOUBLE_EQ(train.saved(0, 1).fixed, 1024);
  EXPECT_DOUBLE_EQ(train.saved(2, 2).per_sample, 64);  // y
  EXPECT_DOUBLE_EQ(train.saved(2, 3).fixed, 0);
  EXPECT_DOUBLE_EQ(train.activation(0, 3).fixed, 1024);
  EXPECT_DOUBLE_EQ(train.activation(2, 3).fixed, 1024);  // merged enters the later stage whole
  EXPECT_DOUBLE_EQ(train.offloaded(0, 1).fixed, 0);      // merged leaves the range: a result
  EXPECT_DOUBLE_EQ(train.offloaded(0, 3).fixed, 1024);
  // Gradients in flight: merged's at the add (which hands W and ab that very gradient), whole; y's, z's and
  // merged's at the last matmul.
  EXPECT_DOUBLE_EQ(train.workspace(1).per_sample, 0);
  EXPECT_DOUBLE_EQ(train.workspace(1).fixed, 1024);
  EXPECT_DOUBLE_EQ(train.workspace(3).per_sample, 128);
  EXPECT_DOUBLE_EQ(train.workspace(3).fixed, 1024);
  EXPECT_DOUBLE_EQ(train.most_workspace(0, 3, 1), 128 + 1024);
  EXPECT_DOUBLE_EQ(train.most_workspace(0, 1, 20), 1024);  // does not grow with the samples
  // A microbatch's merged weight is saved until the last matmul's backward ends, so each of two microbatches
  // in flight keeps it: two of 2 samples keep 1024 more activations than one of 4 (the old model counted it
  // 1/4 per sample: the same for both), and the backward's peak beyond them (at the last matmul: 192 per
  // sample + 2048, less what the range saved: 64 per sample + 1024, and what the loss kept of z's size,
  // freed by its backward: 64 per sample) is 2 x 64 lower on 2 samples.
  const double two = static_cast<double>(train.memory(StageLoad{0, 3, 2, 2}).value());
  const double one = static_cast<double>(train.memory(StageLoad{0, 3, 4, 1}).value());
  EXPECT_DOUBLE_EQ(train.backward_workspace(0, 3, 2), 128 * 2 + 1024);
  EXPECT_DOUBLE_EQ(two - one, 1024 - 128);
}

// Launch costs make small microbatches dear: with a large fixed part per node the pipeline planner chooses
// fewer microbatches than without one.
TEST(StageModel, FixedPartsKeepThePipelineFromSplittingTheBatchTooFinely) {
  const Graph g =
      chain_graph(std::vector<double>(8, 1e9), std::vector<int64_t>(8, 64), std::vector<int64_t>(8, 64), 16);
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("a", 1)}, make_link(1e9));
  SearchOptions o;
  o.mode = Mode::kTraining;
  o.global_batch = 16;
  o.strategy = StrategyKind::kPipeline;
  const auto microbatches = [&](double fixed_seconds) {
    CostTable t = table_for(g, c);
    for (NodeTimes& n : t.times[0]) {
      n.forward = n.forward + Seconds(fixed_seconds);
      n.forward_fixed = Seconds(fixed_seconds);
    }
    const PlanOutcome out = make_plan(g, c, t, o);
    EXPECT_TRUE(out.plan) << out.error;
    return out.plan ? out.plan->microbatches : 0;
  };
  const int free_calls = microbatches(0);
  const int dear_calls = microbatches(16e-3);  // one node's whole 16-sample work again, per call
  EXPECT_GE(free_calls, 8);
  EXPECT_LT(dear_calls, free_calls);
}

// Two nodes of 1000 trainable floats each (8000 bytes of weights) on one device; Adam.
struct TwoNodes {
  Graph g = chain_graph({1e9, 1e9}, {1000, 1000}, {1000, 1000});
  Cluster c = make_cluster({make_spec("a", 1, 1)}, make_link(10));
  CostTable t = table_for(g, c);
  SearchOptions o = adam();
  static SearchOptions adam() {
    SearchOptions o;
    o.optimizer = Optimizer::kAdam;
    return o;
  }
};

TEST(StageModel, MemoryFollowsTheSavingsChosen) {
  const TwoNodes x;
  const StageModel m(x.g, x.c, x.t, x.o);
  const Bytes plain = m.memory(StageLoad{0, 1, 4, 3, Checkpointing::kNone, Offload::kNone});
  const Bytes ckpt = m.memory(StageLoad{0, 1, 4, 3, Checkpointing::kFull, Offload::kNone});
  const Bytes off = m.memory(StageLoad{0, 1, 4, 3, Checkpointing::kNone, Offload::kOptimizerState});
  EXPECT_LT(ckpt, plain);
  EXPECT_EQ((plain - off).value(), 2 * 8000);  // Adam: two moments of 8000 bytes of weights
  EXPECT_GT(m.offload_time(StageLoad{0, 1, 4, 3, Checkpointing::kNone, Offload::kOptimizerState}).value(), 0);
  EXPECT_EQ(m.memory_cap(0), Bytes(1 << 30));
}

TEST(StageModel, ModelStateIsWeightsGradientsAndOptimizerState) {
  TwoNodes x;
  const StageModel train(x.g, x.c, x.t, x.o);
  const StageLoad load{0, 1, 4, 3, Checkpointing::kNone, Offload::kNone};
  EXPECT_EQ(train.model_state(load), Bytes(8000 + 8000 + 2 * 8000));  // weights, gradients, two moments
  EXPECT_EQ(train.model_state(StageLoad{0, 1, 4, 3, Checkpointing::kNone, Offload::kOptimizerState}),
            Bytes(16000));
  // The rest of memory() grows with the samples and microbatches in flight; the state does not.
  EXPECT_GT(train.memory(load), train.model_state(load));
  EXPECT_EQ(train.model_state(StageLoad{0, 1, 8, 6, Checkpointing::kNone, Offload::kNone}),
            train.model_state(load));
  x.o.mode = Mode::kInference;
  const StageModel infer(x.g, x.c, x.t, x.o);
  EXPECT_EQ(infer.model_state(load), Bytes(8000));
}

TEST(StageModel, ActivationOffloadMovesWhatDiesInsideAndPaysTwoCopiesPerMicrobatch) {
  TwoNodes x;
  x.o.host_bandwidth = BytesPerSecond(10e9);
  const StageModel m(x.g, x.c, x.t, x.o);
  const StageLoad plain{0, 1, 4, 3, Checkpointing::kNone, Offload::kNone};
  const StageLoad act{0, 1, 4, 3, Checkpointing::kNone, Offload::kActivations};
  const StageLoad both{0, 1, 4, 3, Checkpointing::kNone, Offload::kActivationsAndOptimizerState};
  // Kept per sample: the 16-float input (saved by node 0), node 0's 1000-float output (saved by node 1),
  // what the loss saves of the output's size and its target (cross-entropy's int64 class index); the
  // 1000-float graph output itself, saved by nobody, is dropped once the loss has it. Offload moves only
  // node 0's output: the input stays on the device. A microbatch is 4 samples.
  EXPECT_DOUBLE_EQ(m.activation(0, 1).per_sample, 4 * 16 + 4 * 1000 + 4 * 1000 + 8);
  EXPECT_DOUBLE_EQ(m.saved(0, 1).per_sample, 4 * 1000);
  EXPECT_DOUBLE_EQ(m.offloaded(0, 1).per_sample, 4 * 1000);
  const double moved = 4.0 * 4 * 1000;
  EXPECT_GT(m.memory(act).value(), 0);
  EXPECT_LT(m.memory(act), m.memory(plain));
  // Three microbatches in flight keep the rest; one microbatch's moved tensors are on the device at once.
  EXPECT_NEAR(static_cast<double>((m.memory(plain) - m.memory(act)).value()), 2 * moved, 1.0);
  EXPECT_EQ((m.memory(act) - m.memory(both)).value(), 2 * 8000);  // Adam's two moments go to the host too
  EXPECT_NEAR(m.activation_transfer(act).value(), moved / 10e9, 1e-18);
  EXPECT_NEAR((m.microbatch_time(0, act) - m.microbatch_time(0, plain)).value(), 2 * moved / 10e9, 1e-15);
  EXPECT_NEAR((m.microbatch_time(0, both) - m.microbatch_time(0, plain)).value(), 2 * moved / 10e9, 1e-15);
  EXPECT_EQ(m.activation_transfer(plain).value(), 0);
  // The optimizer-state round trip is per step, not per microbatch, and is unchanged by activation offload.
  EXPECT_EQ(m.offload_time(act).value(), 0);
  EXPECT_EQ(m.offload_time(both),
            m.offload_time(StageLoad{0, 1, 4, 3, Checkpointing::kNone, Offload::kOptimizerState}));
  x.o.mode = Mode::kInference;
  const StageModel infer(x.g, x.c, x.t, x.o);
  EXPECT_EQ(infer.activation_transfer(act).value(), 0);
  EXPECT_EQ(infer.memory(act), infer.memory(plain));
}

// Hand-built graphs at batch 1 for the memory model: tensors f32 [1, floats], nodes of 1e9 FLOP.
struct GraphBuilder {
  Graph g;
  ValueId shaped(ValueId id, int64_t floats) {
    g.value(id).tensors = {TensorMeta{{1, floats}, DType::kFloat32}};
    return id;
  }
  ValueId input(int64_t floats) { return shaped(g.add_input("x"), floats); }
  ValueId weight(int64_t floats) {
    const ValueId w = g.add_parameter("w" + std::to_string(g.num_values()), true);
    g.value(w).tensors = {TensorMeta{{floats}, DType::kFloat32}};
    return w;
  }
  ValueId op(const std::string& name, std::vector<ValueId> inputs, int64_t floats) {
    const ValueId y = shaped(g.add_value(ValueKind::kTensor, "v" + std::to_string(g.num_values())), floats);
    const NodeId n = g.add_node(name, std::move(inputs), {y});
    g.node(n).cost = OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
    return y;
  }
};

// A StageModel of `g` on one device, for inference or training (Adam).
struct OneDevice {
  Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  CostTable t;
  StageModel m;
  OneDevice(const Graph& g, Mode mode) : t(table_for(g, c)), m(g, c, t, options(mode)) {}
  static SearchOptions options(Mode mode) {
    SearchOptions o;
    o.mode = mode;
    o.optimizer = Optimizer::kAdam;
    return o;
  }
};

TEST(StageModel, InferencePeakOfAChainIsItsLargestNodesInputAndOutput) {
  // Per sample: x 16 floats (64 B) -> y0 10 (40 B) -> y1 1000 (4000 B) -> y2 20 (80 B); batch 4. A value
  // lives from its producer to its last reader, so while node i runs only its input and output are alive.
  const Graph g = chain_graph({1e9, 1e9, 1e9}, {10, 1000, 20}, {100, 100, 100}, 4);
  const OneDevice x(g, Mode::kInference);
  EXPECT_DOUBLE_EQ(x.m.live_peak(0, 2, 1), 4000 + 80);  // node 2
  EXPECT_DOUBLE_EQ(x.m.live_peak(0, 2, 1), x.m.most_workspace(0, 2, 1));
  EXPECT_DOUBLE_EQ(x.m.live_peak(0, 0, 1), 64 + 40);
  EXPECT_DOUBLE_EQ(x.m.live_peak(1, 1, 1), 40 + 4000);
  // Inference memory: the weights (no gradients nor optimizer state) and the peak of `samples` samples.
  EXPECT_EQ(x.m.memory(StageLoad{0, 2, 3, 1, Checkpointing::kNone, Offload::kNone}),
            Bytes(4 * 300 + 3 * (4000 + 80)));
  EXPECT_EQ(x.m.memory(StageLoad{0, 0, 3, 1, Checkpointing::kNone, Offload::kNone}),
            Bytes(4 * 100 + 3 * 104));
}

// x f32[4, 512, 4, 4] -> 3x3 convolution (512 -> 512 channels, a 9 MiB weight) -> y, graph batch 4.
Graph one_convolution() {
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{4, 512, 4, 4}, DType::kFloat32}};
  const ValueId w = g.add_parameter("w", true);
  g.value(w).tensors = {TensorMeta{{512, 512, 3, 3}, DType::kFloat32}};
  const ValueId y = g.add_value(ValueKind::kTensor, "y");
  g.value(y).tensors = {TensorMeta{{4, 512, 4, 4}, DType::kFloat32}};
  g.node(g.add_node("aten::_convolution", {x, w}, {y})).cost =
      OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.set_outputs({y});
  return g;
}

// one_convolution on cluster devices 0 (one CPU core), 1 (two CPU cores) and 2 (a GPU). What the kernel
// holds beyond its input and output follows the device (cost/memory.h's kernel_scratch_bytes): LibTorch runs
// one row in its native kernel (a column buffer of 512 x 9 x 16 floats), two or more in oneDNN, which
// reorders the weight once per call whatever the rows; a GPU is taken as holding a copy of input and output.
TEST(StageModel, InferencePeakAddsTheRunningKernelsWorkingMemoryOnItsDevice) {
  const Graph g = one_convolution();
  DeviceSpec one = make_spec("cpu1", 1), two = make_spec("cpu2", 1);
  one.kind = two.kind = DeviceKind::kCpu;
  one.cores = 1;
  two.cores = 2;
  const Cluster c = make_cluster({one, two, make_spec("gpu", 1)}, make_link(10));
  const CostTable t = table_for(g, c);
  SearchOptions o;
  o.mode = Mode::kInference;
  const StageModel m(g, c, t, o);
  const double weight = 512 * 512 * 9 * 4, row = 512 * 16 * 4;  // bytes of the weight, of one row
  EXPECT_DOUBLE_EQ(m.live_peak(0, 0, 1), 2 * row);              // input and output
  EXPECT_DOUBLE_EQ(m.peak_live(0, 0, 1, 0), 2 * row + 512 * 9 * 16 * 4);
  EXPECT_DOUBLE_EQ(m.peak_live(0, 0, 2, 0), 4 * row + 2 * row + weight);
  EXPECT_DOUBLE_EQ(m.peak_live(0, 0, 3, 1), 6 * row + 3 * row + weight);
  EXPECT_DOUBLE_EQ(m.peak_live(0, 0, 3, 2), 6 * row + 6 * row);
  EXPECT_DOUBLE_EQ(m.peak_live(0, 0, 3, -1), m.peak_live(0, 0, 3, 2));  // a load without a device
  StageLoad load{0, 0, 2, 1, Checkpointing::kNone, Offload::kNone};
  load.device = 0;
  EXPECT_EQ(m.memory(load), Bytes(static_cast<int64_t>(weight + 6 * row + weight)));
}

// Training the same convolution on a CPU core, LibTorch runs its backward on two rows in oneDNN, which holds
// a copy of the input beside the output's gradient, and on one row in its native kernel, which makes its
// column buffer again (cost/memory.h's backward_kernel_scratch_bytes); on a GPU nothing is added. After the
// step's first backward the node also makes its weight's gradient afresh, to be added into the one there.
TEST(StageModel, BackwardPeakAddsTheKernelsBackwardWorkingMemoryOnItsDevice) {
  const Graph g = one_convolution();
  DeviceSpec cpu = make_spec("cpu1", 1);
  cpu.kind = DeviceKind::kCpu;
  cpu.cores = 1;
  const Cluster c = make_cluster({cpu, make_spec("gpu", 1)}, make_link(10));
  const CostTable t = table_for(g, c);
  const StageModel m(g, c, t, SearchOptions{});
  const double row = 512 * 16 * 4, weight = 512 * 512 * 9 * 4;  // bytes of one row of x (and of y)
  const auto beyond = [&](int samples, int device, bool first_of_step) {
    StageLoad load{0, 0, samples, 1, Checkpointing::kNone, Offload::kNone};
    load.device = device;
    const double peak = m.backward_peak(load, first_of_step).beyond_state;
    // The backward over time holds the kernel's working memory in its node's moment too.
    double most = -1e300;
    for (const StageModel::Moment& moment : m.backward_moments(0, load, first_of_step, kMomentsPerTask))
      most = std::max(most, moment.bytes);
    EXPECT_DOUBLE_EQ(most, peak) << samples << " samples on device " << device;
    return peak;
  };
  // The conv's backward holds y's gradient (x is a user input: it gets none) and not the loss's tensor the
  // loss's backward freed: nothing beyond y's size, but for the weight's fresh gradient and the kernel's.
  EXPECT_DOUBLE_EQ(beyond(2, 1, false), weight);
  EXPECT_DOUBLE_EQ(beyond(2, 0, false), weight + 2 * row);
  EXPECT_DOUBLE_EQ(beyond(1, 0, false), weight + 512 * 9 * 16 * 4);
  EXPECT_DOUBLE_EQ(beyond(2, -1, false), weight);  // a load without a device
  // The step's first backward makes the weight's gradient as the one the step keeps (in the model state):
  // the kernel's working memory alone is beyond, more than the loss's backward (two of y's size) less the
  // gradient it has not made yet.
  EXPECT_DOUBLE_EQ(beyond(2, 0, true), 2 * row);
  EXPECT_DOUBLE_EQ(beyond(2, 1, true), 0.0);
}

TEST(StageModel, InferencePeakCountsBranchesAliveAtOnce) {
  // x 16 -> n0 linear -> a 1000 ----------------------> n3 linear -> d 10 --> n4 add -> s 10
  //      \-> n1 linear -> b 1000 -> n2 linear -> c 10 -------------------/
  // While n1 runs, a waits for n3: x 64 + a 4000 + b 4000 are alive, though no single node reads or writes
  // more than 64 + 4000.
  GraphBuilder b;
  const ValueId x = b.input(16);
  const ValueId va = b.op("aten::linear", {x, b.weight(16000)}, 1000);
  const ValueId vb = b.op("aten::linear", {x, b.weight(16000)}, 1000);
  const ValueId vc = b.op("aten::linear", {vb, b.weight(10000)}, 10);
  const ValueId vd = b.op("aten::linear", {va, b.weight(10000)}, 10);
  b.g.set_outputs({b.op("aten::add", {vc, vd}, 10)});
  const OneDevice d(b.g, Mode::kInference);
  // The largest gradients in flight (a training figure): b and c at n2 (x gets no gradient).
  EXPECT_DOUBLE_EQ(d.m.most_workspace(0, 4, 1), 4000 + 40);
  EXPECT_DOUBLE_EQ(d.m.live_peak(0, 4, 1), 64 + 4000 + 4000);
  EXPECT_DOUBLE_EQ(d.m.live_peak(1, 1, 1), 64 + 4000 + 4000);
  // From n2 on: while n2 runs, a (crossing) and b (its input) and c are alive.
  EXPECT_DOUBLE_EQ(d.m.live_peak(2, 4, 1), 4000 + 4000 + 40);
  EXPECT_DOUBLE_EQ(d.m.live_peak(3, 4, 1), 4000 + 40 + 40);
  EXPECT_DOUBLE_EQ(d.m.live_peak(4, 4, 1), 3 * 40);
  const Bytes weights = d.m.parameter_bytes(0, 4);
  EXPECT_EQ(weights, Bytes(4 * (16000 + 16000 + 10000 + 10000)));
  EXPECT_EQ(d.m.memory(StageLoad{0, 4, 2, 1, Checkpointing::kNone, Offload::kNone}),
            weights + Bytes(2 * (64 + 4000 + 4000)));
}

// x 16 -> n0 linear -> y 1000 -> n1 relu_ (in place: y2 is y's storage) -> n2 view -> v (y's storage too)
//   -> n3 linear -> o 10
Graph inplace_view_chain() {
  GraphBuilder b;
  const ValueId y = b.op("aten::linear", {b.input(16), b.weight(16000)}, 1000);
  const ValueId y2 = b.op("aten::relu_", {y}, 1000);
  const ValueId v = b.op("aten::view", {y2}, 1000);
  b.g.set_outputs({b.op("aten::linear", {v, b.weight(10000)}, 10)});
  return b.g;
}

TEST(StageModel, InPlaceResultsAndViewsShareTheirInputsStorage) {
  const Graph g = inplace_view_chain();
  const OneDevice infer(g, Mode::kInference);
  // y, y2 and v are one 4000-byte storage, alive from n0 to n3.
  EXPECT_DOUBLE_EQ(infer.m.live_peak(0, 3, 1), 64 + 4000);
  EXPECT_DOUBLE_EQ(infer.m.live_peak(1, 2, 1), 4000);
  EXPECT_DOUBLE_EQ(infer.m.live_peak(3, 3, 1), 4000 + 40);
  // The workspace (largest node's inputs + outputs) counts relu_'s input and output apart.
  EXPECT_DOUBLE_EQ(infer.m.most_workspace(1, 2, 1), 8000);
  // Training: n0 saves the graph input (not attributed to a node), relu_ saves y2 and the last linear v,
  // both y's storage: 4000 bytes once, at n0. o, a graph output nobody saves, is dropped once the loss has
  // it; the loss saves 40 of its size and its target (an int64 class index) 8.
  const OneDevice train(g, Mode::kTraining);
  EXPECT_DOUBLE_EQ(train.m.saved(0, 3).per_sample, 4000);
  EXPECT_DOUBLE_EQ(train.m.activation(0, 3).per_sample, 64 + 4000 + 40 + 8);
  EXPECT_DOUBLE_EQ(train.m.offloaded(0, 3).per_sample, 4000);
}

// x 16 -> n0 linear -> h 1000 -> n1 `act` -> r 1000 -> n2 linear -> o 10
Graph activation_chain(const std::string& act) {
  GraphBuilder b;
  const ValueId h = b.op("aten::linear", {b.input(16), b.weight(16000)}, 1000);
  const ValueId r = b.op(act, {h}, 1000);
  b.g.set_outputs({b.op("aten::linear", {r, b.weight(10000)}, 10)});
  return b.g;
}

TEST(StageModel, TrainingKeepsOnlyWhatAutogradSaves) {
  // relu saves its output r (which the last linear saves too); nobody saves h, freed once relu has run.
  const Graph relu = activation_chain("aten::relu");
  const OneDevice r(relu, Mode::kTraining);
  EXPECT_DOUBLE_EQ(r.m.saved(0, 2).per_sample, 4000);
  // x, r, the loss's tensor of o's size and its target (cross-entropy's int64 class index); o itself is
  // dropped once the loss has it
  EXPECT_DOUBLE_EQ(r.m.activation(0, 2).per_sample, 64 + 4000 + 40 + 8);
  // Cut after n0, h is stage 0's result (sent on), not a saved activation; stage 1 receives it.
  EXPECT_DOUBLE_EQ(r.m.saved(0, 0).per_sample, 0);
  EXPECT_DOUBLE_EQ(r.m.activation(0, 0).per_sample, 64 + 4000);
  EXPECT_DOUBLE_EQ(r.m.activation(1, 2).per_sample, 4000 + 4000 + 40 + 8);  // h, r, the loss's
  // Offload moves r where it dies inside the stage, nothing where the next stage saves it.
  EXPECT_DOUBLE_EQ(r.m.offloaded(0, 2).per_sample, 4000);
  EXPECT_DOUBLE_EQ(r.m.offloaded(0, 1).per_sample, 0);
  EXPECT_DOUBLE_EQ(r.m.activation(0, 1).per_sample, 64 + 4000);
  // gelu saves its input h as well.
  const Graph gelu = activation_chain("aten::gelu");
  const OneDevice gl(gelu, Mode::kTraining);
  EXPECT_DOUBLE_EQ(gl.m.saved(0, 2).per_sample, 8000);
  EXPECT_DOUBLE_EQ(gl.m.activation(0, 2).per_sample, 64 + 8000 + 40 + 8);
  EXPECT_DOUBLE_EQ(gl.m.offloaded(0, 1).per_sample, 4000);  // h dies inside; r is saved by n2
  EXPECT_DOUBLE_EQ(gl.m.activation(0, 1).per_sample, 64 + 8000);
  // Training memory of one microbatch of 2 samples, two in flight, every gradient there (the step's
  // microbatches not known): model state (weights, gradients, Adam's two moments: 4 x 26000 floats), the
  // activations of each microbatch and the backward's peak: at n0, h's gradient (4000 a sample) beside w0's
  // made afresh (64000 bytes, to be added into the one there), less what backward freed before n0's: r (4000
  // a sample) and what the loss kept (40). (At n1: 8000 a sample in flight and no weight; at n2: r's and o's
  // gradients, 4040 a sample, and w1's 40000.)
  EXPECT_EQ(r.m.memory(StageLoad{0, 2, 2, 2, Checkpointing::kNone, Offload::kNone}),
            Bytes(4 * 4 * 26000 + 2 * (4000 - 4000 - 40) + 64000 + 2 * 2 * (64 + 4000 + 40 + 8)));
}

bool has(const std::vector<Savings>& choices, Checkpointing c, Offload o) {
  return std::any_of(choices.begin(), choices.end(),
                     [&](const Savings& s) { return s.checkpointing == c && s.offload == o; });
}

TEST(StageModel, SavingsChoicesNeverOffloadFromACpuNorCombineCheckpointingWithActivationOffload) {
  const Graph g = chain_graph({1e9}, {10}, {10});
  DeviceSpec cpu = make_spec("cpu", 1);
  cpu.kind = DeviceKind::kCpu;
  cpu.cores = 1;
  const Cluster c = make_cluster({make_spec("gpu", 1), cpu}, make_link(10));
  const CostTable t = table_for(g, c);
  const StageModel m(g, c, t, SearchOptions{});
  EXPECT_TRUE(m.can_offload(0));
  EXPECT_FALSE(m.can_offload(1));
  const auto gpu = m.savings_choices({0});
  ASSERT_EQ(gpu.size(), 6u);
  EXPECT_EQ(gpu.front().checkpointing, Checkpointing::kNone);
  EXPECT_EQ(gpu.front().offload, Offload::kNone);
  for (Offload o : {Offload::kNone, Offload::kOptimizerState, Offload::kActivations,
                    Offload::kActivationsAndOptimizerState})
    EXPECT_TRUE(has(gpu, Checkpointing::kNone, o)) << offload_name(o);
  EXPECT_TRUE(has(gpu, Checkpointing::kFull, Offload::kOptimizerState));
  EXPECT_FALSE(has(gpu, Checkpointing::kFull, Offload::kActivations));
  EXPECT_FALSE(has(gpu, Checkpointing::kFull, Offload::kActivationsAndOptimizerState));
  for (const auto& devices : {std::vector<int>{1}, std::vector<int>{0, 1}}) {
    const auto choices = m.savings_choices(devices);
    ASSERT_EQ(choices.size(), 2u);
    for (const Savings& s : choices) EXPECT_EQ(s.offload, Offload::kNone);
  }
  SearchOptions inference;
  inference.mode = Mode::kInference;
  const StageModel infer(g, c, t, inference);
  ASSERT_EQ(infer.savings_choices({0}).size(), 1u);
}

TEST(StageModel, RefusesATableWithoutTheClustersSpec) {
  const Graph g = chain_graph({1e9}, {10}, {10});
  const Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  const CostTable t = roofline_cost_table(g, {make_spec("other", 1)});
  EXPECT_THROW(StageModel(g, c, t, SearchOptions{}), Error);
}

TEST(StageModel, BackwardWorkspaceLeavesOutWhatLaterNodesSavedAndBackwardFreed) {
  // x (16 floats) -> linear -> y0 (4000) -> linear -> y1 (10) -> linear -> y2 (10), batch 1: the linears save
  // their inputs, so y0 (16000 bytes) is saved by node 1 and y1 (40) by node 2.
  const Graph g = chain_graph({1e9, 1e9, 1e9}, {4000, 10, 10}, {10, 10, 10});
  const Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  SearchOptions o;
  o.mode = Mode::kTraining;
  const StageModel m(g, c, table_for(g, c), o);
  // Working sets (the inputs and outputs that get a gradient; x, a user input, gets none): node 0 16000,
  // node 1 16000 + 40, node 2 40 + 40.
  EXPECT_DOUBLE_EQ(m.most_workspace(0, 2, 1), 16040);
  // Backward at node 0 comes after y1 (produced later, 40) is freed: 16000 - 40 = 15960; at node 1 nothing
  // produced later was saved: 16040; at node 2: 80.
  EXPECT_DOUBLE_EQ(m.backward_workspace(0, 2, 1), 16040);
  EXPECT_DOUBLE_EQ(m.backward_workspace(0, 0, 1), 16000);
  EXPECT_DOUBLE_EQ(m.backward_workspace(2, 2, 1), 80);
}

// The engine starts a step without gradients and backward makes each as it passes its reader. x (16 floats)
// -> n0 (w0, 1000 floats) -> y0 (10) -> n1 (w1, 10) -> y1 (10) -> n2 (w2, 10) -> y2 (4000), batch 1: the peak
// of backward is the loss's own, as backward starts, where no gradient exists: two tensors of y2's size
// beyond the activations (n2's working set, y1 40 + y2 16000 bytes per sample, comes after the loss's
// backward freed its 16000). One microbatch per step: the peak leaves out every gradient (4080 bytes); with
// more (or not known) later microbatches run backward beside all of them.
TEST(StageModel, OneMicrobatchsBackwardPeakHoldsOnlyTheGradientsMadeByThen) {
  const Graph g = chain_graph({1e9, 1e9, 1e9}, {10, 10, 4000}, {1000, 10, 10});
  const OneDevice x(g, Mode::kTraining);
  const StageModel& m = x.m;
  StageLoad load{0, 2, 2, 1, Checkpointing::kNone, Offload::kNone};
  EXPECT_DOUBLE_EQ(m.loss_backward_moment(2, 2), 2 * 2 * 16000);
  EXPECT_DOUBLE_EQ(m.loss_freed(2, 2), 2 * 16000);
  EXPECT_DOUBLE_EQ(m.backward_workspace(0, 2, 2) - m.loss_freed(2, 2), 2 * 40);
  EXPECT_DOUBLE_EQ(m.backward_peak(load).beyond_state, 64000);
  EXPECT_EQ(m.backward_peak(load).unmade_gradients, Bytes(0));
  const Bytes whole_step = m.memory(load);
  load.microbatches = 2;
  EXPECT_EQ(m.memory(load), whole_step);
  load.microbatches = 1;
  EXPECT_EQ(m.backward_peak(load).unmade_gradients, Bytes(4080));
  EXPECT_DOUBLE_EQ(m.backward_peak(load).beyond_state, 64000 - 4080);
  EXPECT_EQ(m.memory(load), whole_step - Bytes(4080));
  // Checkpointing recomputes the microbatch before its backward: the same gradients are missing.
  load.checkpointing = Checkpointing::kFull;
  const Bytes checkpointed = m.memory(load);
  load.microbatches = 0;
  EXPECT_EQ(m.memory(load), checkpointed + Bytes(4080));
  // A range after n1 has no gradient to wait for; a range of n0 alone makes its one gradient at once.
  EXPECT_EQ(m.backward_peak(StageLoad{2, 2, 1, 1, Checkpointing::kNone, Offload::kNone}).unmade_gradients,
            Bytes(0));
  EXPECT_EQ(
      m.backward_peak(StageLoad{0, 0, 1, 1, Checkpointing::kNone, Offload::kNone, WeightHome::kHost, -1, 1})
          .unmade_gradients,
      Bytes(0));
  // Inference makes no gradients.
  const OneDevice infer(g, Mode::kInference);
  EXPECT_EQ(infer.m.backward_peak(load).unmade_gradients, Bytes(0));
}

// The same chain with several microbatches per step. The device's first backward runs before any gradient
// exists; the later ones beside all of them. GPipe keeps all 4 microbatches when the first backward starts,
// 3 at the second: one microbatch's activations (2 x 16152 bytes: x, y0, y1, what the loss saves of the
// output's size and its target) outweigh the 4080 bytes of gradients, so the first backward is the peak and
// lacks those (its peak is the loss's, before any gradient). 1F1B with 2
// microbatches in flight runs a forward between backwards: its second backward holds as many microbatches
// and every gradient, the old figure.
TEST(StageModel, AStepsFirstBackwardHoldsOnlyTheGradientsMadeByThenWhateverTheMicrobatches) {
  const Graph g = chain_graph({1e9, 1e9, 1e9}, {10, 10, 4000}, {1000, 10, 10});
  const OneDevice x(g, Mode::kTraining);
  const StageModel& m = x.m;
  EXPECT_DOUBLE_EQ(m.activation(0, 2).per_sample, 64 + 40 + 40 + 16000 + 8);
  StageLoad gpipe{0, 2, 2, 4, Checkpointing::kNone, Offload::kNone};  // microbatches 0: not known
  const Bytes every_gradient = m.memory(gpipe);
  gpipe.microbatches = 4;
  EXPECT_EQ(m.memory(gpipe), every_gradient - Bytes(4080));
  EXPECT_EQ(backwards_in_flight(gpipe.in_flight, 4).first, 4);
  EXPECT_EQ(backwards_in_flight(gpipe.in_flight, 4).later, 3);
  StageLoad one_f{0, 2, 2, 2, Checkpointing::kNone, Offload::kNone, WeightHome::kHost, -1, 4};
  EXPECT_EQ(backwards_in_flight(one_f.in_flight, 4).later, 2);
  one_f.microbatches = 0;
  const Bytes one_f_every_gradient = m.memory(one_f);
  one_f.microbatches = 4;
  EXPECT_EQ(m.memory(one_f), one_f_every_gradient);
  // When what the first backward lacks outweighs a microbatch's activations, the second backward (one
  // microbatch fewer, every gradient) is the peak: y1 (100,000 floats) makes n2's working set the largest,
  // and at n2 the first backward lacks w0's 4 MB gradient; a microbatch keeps 400,152 bytes (x, y0, y1, the
  // loss's tensor of y2's size and its target).
  const Graph heavy = chain_graph({1e9, 1e9, 1e9}, {10, 100000, 10}, {1000000, 10, 10});
  const OneDevice y(heavy, Mode::kTraining);
  EXPECT_DOUBLE_EQ(y.m.activation(0, 2).per_sample, 64 + 40 + 400000 + 40 + 8);
  StageLoad two{0, 2, 1, 2, Checkpointing::kNone, Offload::kNone};
  const Bytes heavy_every_gradient = y.m.memory(two);
  two.microbatches = 2;
  EXPECT_DOUBLE_EQ(static_cast<double>((heavy_every_gradient - y.m.memory(two)).value()),
                   y.m.activation(0, 2).per_sample);
}

// A walk over a range's backward on `samples` samples that uses only the model's per-node figures: at node
// k, the microbatch's working set there less what later nodes saved (backward freed it); for a range ending
// the graph (`output`: the bytes of its output), less the loss's tensor of the output's size (its backward
// ran first and freed it), and the loss's own backward before the nodes', two tensors of the output's size.
// `first`: the step's first backward, without the gradients of the weights only nodes before k read (not
// made yet; the loss's backward has none); `later`: a later backward, with every gradient and at each node
// its weight's made afresh, to be added into the one there. A range before the last (of a chain) holds the
// gradient of its output, returned to it, beside every node but the last, whose workspace has it.
// `first` and `later` are the most of the moments, each listed in `first_at` and `later_at`: the loss's
// backward (a range ending the graph), then the nodes from the last.
struct BackwardWalk {
  double first = 0;
  double later = 0;
  std::vector<double> first_at, later_at;
};
BackwardWalk walk_backward(const StageModel& m, NodeId first, NodeId last, int samples, double output) {
  const bool ends = last == m.graph().num_nodes() - 1;
  const double loss_kept = ends ? output : 0.0;
  BackwardWalk walk;
  if (ends) {
    walk.first_at.push_back(2 * output - static_cast<double>(m.trainable_bytes(first, last).value()));
    walk.later_at.push_back(2 * output);
  }
  for (NodeId k = last; k >= first; --k) {
    const double freed = k < last ? m.saved(k + 1, last).per_sample : 0.0;
    const double returned = !ends && k < last ? m.input(last + 1).per_sample : 0.0;
    const double at_k = (m.most_workspace(k, k, 1) - freed + returned) * samples - loss_kept;
    const double unmade = k > first ? static_cast<double>(m.trainable_bytes(first, k - 1).value()) : 0.0;
    walk.first_at.push_back(at_k - unmade);
    walk.later_at.push_back(at_k + static_cast<double>(m.trainable_bytes(k, k).value()));
  }
  walk.first = *std::max_element(walk.first_at.begin(), walk.first_at.end());
  walk.later = *std::max_element(walk.later_at.begin(), walk.later_at.end());
  return walk;
}

// Several microbatches against a walk over the step's backwards on one device: before backward j, min(m,
// k + j) forwards have run (k = microbatches in flight at the first: GPipe m, 1F1B the stages to the end)
// and j backwards, so min(m, k + j) - j microbatches are kept; the first backward's workspace lacks the
// gradients not made yet (the per-node walk of the test below), the later ones have them all and at each
// node the fresh gradient of its weight, to be added into the one there. Random chains, every range, 1 to 3
// samples, 2 to 5 microbatches, every k, with and without checkpointing.
TEST(StageModel, SeveralMicrobatchesPeakMatchesAWalkOverTheStepsBackwards) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int64_t> size(1, 5000);
  for (int trial = 0; trial < 12; ++trial) {
    const int n = 2 + trial % 6;
    std::vector<int64_t> acts, params;
    for (int i = 0; i < n; ++i) {
      acts.push_back(size(rng));
      params.push_back(size(rng) * (i == 0 ? 20 : 1));  // sometimes the gradients outweigh a microbatch
    }
    const Graph g = chain_graph(std::vector<double>(static_cast<size_t>(n), 1e9), acts, params);
    const OneDevice x(g, Mode::kTraining);
    const StageModel& m = x.m;
    for (NodeId first = 0; first < n; ++first) {
      for (NodeId last = first; last < n; ++last) {
        for (int samples = 1; samples <= 3; ++samples) {
          // Each backward's peak beyond its activations.
          const BackwardWalk walk =
              walk_backward(m, first, last, samples, 4.0 * static_cast<double>(acts.back()) * samples);
          const double act = m.activation(first, last).per_sample * samples;
          for (Checkpointing c : {Checkpointing::kNone, Checkpointing::kFull}) {
            const auto kept = [&](int microbatches) {
              return c == Checkpointing::kFull ? m.input(first).per_sample * samples * microbatches + act
                                               : act * microbatches;
            };
            for (int mb = 2; mb <= 5; ++mb) {
              for (int k = 1; k <= mb; ++k) {
                const StageLoad load{first, last, samples, k, c, Offload::kNone, WeightHome::kHost, -1, mb};
                double want = -1e300;
                for (int j = 0; j < mb; ++j) {
                  want = std::max(want, kept(std::min(mb, k + j) - j) + (j == 0 ? walk.first : walk.later));
                }
                want += static_cast<double>(m.model_state(load).value());
                ASSERT_NEAR(static_cast<double>(m.memory(load).value()), want, 1.0)
                    << "trial " << trial << " [" << first << ", " << last << "] samples " << samples << " m "
                    << mb << " in flight " << k << " checkpointing " << static_cast<int>(c);
              }
            }
          }
        }
      }
    }
  }
}

// A chain of linear nodes of `flops` each, every node's output and weight 1 to 5000 floats drawn from `rng`
// (output then weight, node by node); `acts` gets the outputs' sizes.
Graph sized_chain(std::mt19937& rng, const std::vector<double>& flops, std::vector<int64_t>& acts) {
  std::uniform_int_distribution<int64_t> size(1, 5000);
  std::vector<int64_t> params;
  acts.clear();
  for (size_t i = 0; i < flops.size(); ++i) {
    acts.push_back(size(rng));
    params.push_back(size(rng));
  }
  return chain_graph(flops, acts, params);
}

// One microbatch's peak against the walk over the range's nodes (walk_backward's first backward). Random
// chains, every range, 1 to 4 samples.
TEST(StageModel, BackwardPeakMatchesAWalkOverTheRangesNodes) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 2 + trial % 9;
    std::vector<int64_t> acts;
    const Graph g = sized_chain(rng, std::vector<double>(static_cast<size_t>(n), 1e9), acts);
    const OneDevice x(g, Mode::kTraining);
    const StageModel& m = x.m;
    for (NodeId first = 0; first < n; ++first) {
      for (NodeId last = first; last < n; ++last) {
        for (int samples = 1; samples <= 4; ++samples) {
          const BackwardWalk walk =
              walk_backward(m, first, last, samples, 4.0 * static_cast<double>(acts.back()) * samples);
          const StageLoad load{
              first, last, samples, 1, Checkpointing::kNone, Offload::kNone, WeightHome::kHost, -1, 1};
          ASSERT_NEAR(m.backward_peak(load).beyond_state, walk.first, 1e-6)
              << "trial " << trial << " [" << first << ", " << last << "] samples " << samples;
          // Without the gradients' timing (microbatches not known): every gradient there, as in a later
          // backward.
          const StageLoad whole{first, last, samples, 1, Checkpointing::kNone, Offload::kNone};
          ASSERT_NEAR(m.backward_peak(whole).beyond_state, walk.later, 1e-6);
        }
      }
    }
  }
}

// A backward over time (backward_moments, which the host's figure over time follows) against the same walk,
// moment by moment: given a moment for each node, node k's starts once the nodes after it ran (as a
// fraction of the range's backward time on the device) and holds the walk's figure at k, the loss's
// backward sharing the last node's (both start the backward); given fewer, each moment holds the most of
// the nodes starting in its share of the time, and their most is the backward's peak. The forward's
// moments likewise run from the first node and peak at forward_peak. Random chains (1 to 10 GFLOP a node),
// every range, 1 to 3 samples.
TEST(StageModel, MomentsFollowTheRangesNodesInTurn) {
  std::mt19937 rng(17);
  std::uniform_real_distribution<double> gflop(1, 10);
  for (int trial = 0; trial < 12; ++trial) {
    const int n = 2 + trial % 7;
    std::vector<double> flops;
    for (int i = 0; i < n; ++i) flops.push_back(gflop(rng) * 1e9);
    std::vector<int64_t> acts;
    const Graph g = sized_chain(rng, flops, acts);
    const OneDevice x(g, Mode::kTraining);
    const StageModel& m = x.m;
    for (NodeId first = 0; first < n; ++first) {
      for (NodeId last = first; last < n; ++last) {
        const int nodes = last - first + 1;
        for (int samples = 1; samples <= 3; ++samples) {
          const BackwardWalk walk =
              walk_backward(m, first, last, samples, 4.0 * static_cast<double>(acts.back()) * samples);
          const StageLoad load{first, last, samples, 1, Checkpointing::kNone, Offload::kNone};
          const std::string where = "trial " + std::to_string(trial) + " [" + std::to_string(first) + ", " +
                                    std::to_string(last) + "] samples " + std::to_string(samples);
          for (bool first_of_step : {true, false}) {
            const std::vector<double>& at = first_of_step ? walk.first_at : walk.later_at;
            const size_t loss = at.size() - static_cast<size_t>(nodes);  // 1 for a range ending the graph
            const std::vector<StageModel::Moment> each = m.backward_moments(0, load, first_of_step, 1000);
            ASSERT_EQ(each.size(), static_cast<size_t>(nodes)) << where;
            const double total = m.backward(0, first, last, samples).value();
            double ran = 0;
            for (int i = 0; i < nodes; ++i) {
              const NodeId k = last - i;
              const double want =
                  i == 0 && loss == 1 ? std::max(at[0], at[1]) : at[loss + static_cast<size_t>(i)];
              ASSERT_NEAR(each[static_cast<size_t>(i)].bytes, want, 1e-6) << where << " node " << k;
              ASSERT_NEAR(each[static_cast<size_t>(i)].start, ran / total, 1e-12) << where << " node " << k;
              ran += m.backward(0, k, k, samples).value();
            }
            const double peak = m.backward_peak(load, first_of_step).beyond_state;
            for (int moments = 1; moments <= 3; ++moments) {
              const std::vector<StageModel::Moment> few = m.backward_moments(0, load, first_of_step, moments);
              ASSERT_LE(few.size(), static_cast<size_t>(moments));
              ASSERT_EQ(few.front().start, 0.0);
              double most = -1e300;
              for (size_t j = 0; j < few.size(); ++j) {
                if (j > 0) {
                  ASSERT_GE(few[j].start, static_cast<double>(j) / moments - 1e-12) << where;
                }
                most = std::max(most, few[j].bytes);
              }
              ASSERT_NEAR(most, peak, 1e-6) << where << " in " << moments << " moments";
            }
          }
          const std::vector<StageModel::Moment> forward = m.forward_moments(0, load, 1000);
          ASSERT_EQ(forward.size(), static_cast<size_t>(nodes)) << where;
          const double total = m.forward(0, first, last, samples).value();
          double ran = 0, most = -1e300;
          for (int i = 0; i < nodes; ++i) {
            ASSERT_NEAR(forward[static_cast<size_t>(i)].start, ran / total, 1e-12) << where;
            ran += m.forward(0, first + i, first + i, samples).value();
            most = std::max(most, forward[static_cast<size_t>(i)].bytes);
          }
          ASSERT_NEAR(most, m.forward_peak(load), 1e-6) << where;
          ASSERT_EQ(m.forward_moments(0, load, 1).size(), 1u);
          ASSERT_NEAR(m.forward_moments(0, load, 1).front().bytes, m.forward_peak(load), 1e-6) << where;
        }
      }
    }
  }
}

// The last stage keeps the targets of the loss `partita run` computes by default (cost/loss.h): a [1, 1000]
// output takes cross-entropy's int64 class index (8 bytes a sample), a [1, 1, 1000] one MSE's float32 copy of
// its shape (4000). x -> linear -> y: x (64), what the loss saves of y's size (4000), the target; y itself,
// saved by nobody, is dropped once the loss has it.
// Backward's working set at the linear is y's gradient alone: x is a user input, which gets none (it was
// counted, one input's size too many at a one-layer model's peak).
TEST(StageModel, TheLastStageKeepsTheDefaultLosssTargets) {
  for (const bool mse : {false, true}) {
    GraphBuilder b;
    const ValueId y = b.op("aten::linear", {b.input(16), b.weight(16000)}, 1000);
    if (mse) b.g.value(y).tensors = {TensorMeta{{1, 1, 1000}, DType::kFloat32}};
    b.g.set_outputs({y});
    const OneDevice one(b.g, Mode::kTraining);
    EXPECT_DOUBLE_EQ(one.m.activation(0, 0).per_sample, 64 + 4000 + (mse ? 4000 : 8)) << mse;
    EXPECT_DOUBLE_EQ(one.m.most_workspace(0, 0, 1), 4000) << mse;
  }
  // plan --loss mse on the class scores: MSE's targets.
  GraphBuilder b;
  b.g.set_outputs({b.op("aten::linear", {b.input(16), b.weight(16000)}, 1000)});
  SearchOptions o = OneDevice::options(Mode::kTraining);
  o.loss = LossKind::kMse;
  const Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  const StageModel mse(b.g, c, table_for(b.g, c), o);
  EXPECT_DOUBLE_EQ(mse.activation(0, 0).per_sample, 64 + 4000 + 4000);
}

// A float32 tensor of `shape` that op `name` makes from `in` (1 MFLOP, for the cost table).
ValueId float_op(Graph& g, const char* name, std::vector<ValueId> in, std::vector<int64_t> shape) {
  const ValueId y = g.add_value(ValueKind::kTensor, name);
  g.value(y).tensors = {TensorMeta{std::move(shape), DType::kFloat32}};
  g.node(g.add_node(name, std::move(in), {y})).cost =
      OpCost{Flops(1e6), Bytes(0), Bytes(0), CostStatus::kEstimated};
  return y;
}

// Concatenation and reshaping views hand their inputs views of the output's gradient: their backward's
// working set is the output alone. x [1, 256] -> mul by a weight h -> relu a, relu b (1 KiB each) -> cat
// (2 KiB) -> view (2 KiB) -> narrow (the first half: a slicing view, whose backward makes a zeroed tensor of
// its input's size). The weight makes every value after it need a gradient.
TEST(StageModel, ConcatenationAndReshapingViewsWorkOnTheirOutputsGradientAlone) {
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 256}, DType::kFloat32}};
  const auto op = [&](const char* name, std::vector<ValueId> in, std::vector<int64_t> shape) {
    return float_op(g, name, std::move(in), std::move(shape));
  };
  const ValueId w = g.add_parameter("w", true);
  g.value(w).tensors = {TensorMeta{{256}, DType::kFloat32}};
  const ValueId h = op("aten::mul", {x, w}, {1, 256});
  const ValueId a = op("aten::relu", {h}, {1, 256}), b = op("aten::relu", {h}, {1, 256});
  const ValueId c = op("aten::cat", {a, b}, {1, 512});
  const ValueId v = op("aten::view", {c}, {2, 256});
  g.set_outputs({op("aten::narrow", {v}, {1, 256})});
  const OneDevice one(g, Mode::kTraining);
  const StageModel& m = one.m;
  EXPECT_DOUBLE_EQ(m.most_workspace(3, 3, 1), 2048);         // cat: its output only
  EXPECT_DOUBLE_EQ(m.most_workspace(4, 4, 1), 2048);         // view: likewise
  EXPECT_DOUBLE_EQ(m.most_workspace(5, 5, 1), 2048 + 1024);  // narrow: its input and output
  EXPECT_DOUBLE_EQ(m.most_workspace(1, 1, 1), 1024 + 1024);  // relu: its input and output
  EXPECT_DOUBLE_EQ(m.most_workspace(0, 0, 1), 1024);         // mul: its output (x gets no gradient)
}

// An add of two tensors of its output's shape (a residual add) hands both inputs its output's gradient
// itself: its working set is that gradient alone. One that broadcasts reduces the gradient of its smaller
// input (a sum: new memory), so its inputs count as other ops' do.
TEST(StageModel, ASameShapeAddHandsItsInputsItsOutputsGradient) {
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 256}, DType::kFloat32}};
  const auto op = [&](const char* name, std::vector<ValueId> in, std::vector<int64_t> shape) {
    return float_op(g, name, std::move(in), std::move(shape));
  };
  const ValueId w = g.add_parameter("w", true), row = g.add_parameter("row", true);
  g.value(w).tensors = {TensorMeta{{256}, DType::kFloat32}};
  g.value(row).tensors = {TensorMeta{{1, 256}, DType::kFloat32}};
  const ValueId h = op("aten::mul", {x, w}, {1, 256});
  const ValueId r = op("aten::relu", {h}, {1, 256});
  const ValueId residual = op("aten::add", {h, r}, {1, 256});
  const ValueId biased = op("aten::add", {residual, w}, {1, 256});  // w [256] broadcasts
  g.set_outputs({op("aten::add", {biased, row}, {1, 256})});        // a weight of the output's shape
  const OneDevice one(g, Mode::kTraining);
  EXPECT_DOUBLE_EQ(one.m.workspace(2).per_sample, 1024);         // the residual add: its output only
  EXPECT_DOUBLE_EQ(one.m.workspace(3).per_sample, 1024 + 1024);  // the bias add: its input and output
  EXPECT_DOUBLE_EQ(one.m.workspace(4).per_sample, 1024);         // adding a weight of the same shape
}

// A range before the last gets back the gradients of what it sends on, and its backward holds them
// throughout; the producer's workspace counts one as its output's gradient unless a node of the range reads
// the value too (autograd sums that reader's gradient and the returned one into a new tensor). x -> n0 mul by
// w: h -> n1 relu: r -> n2 add(h, r): 1 KiB each.
TEST(StageModel, ARangeGetsBackTheGradientsOfWhatItSendsOn) {
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 256}, DType::kFloat32}};
  const ValueId w = g.add_parameter("w", true);
  g.value(w).tensors = {TensorMeta{{256}, DType::kFloat32}};
  const ValueId h = float_op(g, "aten::mul", {x, w}, {1, 256});
  const ValueId r = float_op(g, "aten::relu", {h}, {1, 256});
  g.set_outputs({float_op(g, "aten::add", {h, r}, {1, 256})});
  const OneDevice one(g, Mode::kTraining);
  const auto entries = [&](NodeId first, NodeId last) {
    std::vector<std::tuple<NodeId, double, double>> got;
    for (const StageModel::ReturnedGradient& e : one.m.returned_gradients(first, last))
      got.emplace_back(e.producer, e.sent.at(1), e.at_producer.at(1));
    return got;
  };
  using Entries = std::vector<std::tuple<NodeId, double, double>>;
  EXPECT_EQ(entries(0, 0), (Entries{{0, 1024, 1024}}));  // h: read by n1 and n2, both after the range
  EXPECT_EQ(entries(0, 1), (Entries{{0, 1024, 0}, {1, 1024, 1024}}));  // the relu reads h too
  EXPECT_EQ(entries(1, 1), (Entries{{1, 1024, 1024}}));                // h comes from the range before
  EXPECT_EQ(entries(0, 2), Entries{});                                 // the last range sends nothing
  // The relu alone: its workspace (the gradients of h and r), r's returned one among them.
  const StageLoad relu{1, 1, 1, 1, Checkpointing::kNone, Offload::kNone, WeightHome::kHost, -1, 1};
  EXPECT_DOUBLE_EQ(one.m.backward_peak(relu).beyond_state, 2048);
  // n0 and n1 with one microbatch: at the relu its workspace and the returned h, less w's gradient (not made
  // yet); at the mul h's gradient (a new tensor: the relu's and the add's summed) beside both returned ones,
  // less what the relu saved (freed by then).
  const StageLoad both{0, 1, 1, 1, Checkpointing::kNone, Offload::kNone, WeightHome::kHost, -1, 1};
  const double saved_by_relu = one.m.saved(1, 1).per_sample;
  ASSERT_GT(saved_by_relu, 0);
  EXPECT_DOUBLE_EQ(one.m.backward_peak(both).beyond_state,
                   std::max(2048.0 + 1024 - 1024, 1024 + 2048 - saved_by_relu));
}

// Weights follow the engine's placement: a CPU device (kHost) counts a tied weight once, in the range of its
// first reader; a device with memory of its own holds every weight its range reads, and the optimizer state
// only of the parameters no other range reads (kOwn), or none when it is one of a stage's replicas (kCopies).
TEST(StageModel, TiedWeightsAreHeldByEveryDeviceRangeThatReadsThem) {
  const Graph g = tied_weight_graph();  // E (4000 B) read by n0 and n2, W (8000 B) by n1
  const OneDevice x(g, Mode::kTraining);
  const StageModel& m = x.m;
  EXPECT_EQ(m.parameter_bytes(0, 0), Bytes(4000));
  EXPECT_EQ(m.parameter_bytes(1, 2), Bytes(8000));
  EXPECT_EQ(m.read_parameter_bytes(1, 2), Bytes(12000));
  EXPECT_EQ(m.read_parameter_bytes(2, 2), Bytes(4000));
  EXPECT_EQ(m.read_parameter_bytes(1, 1), Bytes(8000));
  EXPECT_EQ(m.read_trainable_bytes(0, 2), Bytes(12000));
  EXPECT_EQ(m.owned_trainable_bytes(0, 0), Bytes(0));
  EXPECT_EQ(m.owned_trainable_bytes(0, 1), Bytes(8000));
  EXPECT_EQ(m.owned_trainable_bytes(1, 2), Bytes(8000));
  EXPECT_EQ(m.owned_trainable_bytes(0, 2), Bytes(12000));
  const auto state = [&](NodeId first, NodeId last, WeightHome home, Offload offload = Offload::kNone) {
    return m.model_state(StageLoad{first, last, 1, 1, Checkpointing::kNone, offload, home}).value();
  };
  // Adam: weights, gradients, and two moments where the state is kept.
  EXPECT_EQ(state(0, 0, WeightHome::kHost), 4000 + 4000 + 2 * 4000);
  EXPECT_EQ(state(1, 2, WeightHome::kHost), 8000 + 8000 + 2 * 8000);
  EXPECT_EQ(state(0, 0, WeightHome::kOwn), 4000 + 4000);
  EXPECT_EQ(state(1, 2, WeightHome::kOwn), 12000 + 12000 + 2 * 8000);
  EXPECT_EQ(state(0, 2, WeightHome::kOwn), state(0, 2, WeightHome::kHost));
  EXPECT_EQ(state(0, 2, WeightHome::kCopies), 12000 + 12000);
  EXPECT_EQ(state(1, 2, WeightHome::kOwn, Offload::kOptimizerState), 12000 + 12000);
  // How a device holds them: a CPU device the host's tensors; others copies unless alone in their stage.
  Cluster mixed = make_cluster({make_spec("a", 1), make_spec("a", 1)}, make_link(10));
  mixed.devices[1].spec.kind = DeviceKind::kCpu;
  const StageModel on_mixed(g, mixed, table_for(g, mixed), OneDevice::options(Mode::kTraining));
  EXPECT_EQ(on_mixed.weight_home(0, 1), WeightHome::kOwn);
  EXPECT_EQ(on_mixed.weight_home(0, 2), WeightHome::kCopies);
  EXPECT_EQ(on_mixed.weight_home(1, 1), WeightHome::kHost);
  EXPECT_EQ(on_mixed.weight_home(1, 2), WeightHome::kHost);
}

// The range sums against a direct count over the graph, on random graphs whose weights have 1-3 readers.
TEST(StageModel, RangeWeightSumsMatchADirectCount) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 2 + static_cast<int>(rng() % 10), weights = 1 + static_cast<int>(rng() % 8);
    Graph g;
    ValueId x = g.add_input("x");
    g.value(x).tensors = {TensorMeta{{1, 4}, DType::kFloat32}};
    std::vector<ValueId> w;
    for (int k = 0; k < weights; ++k) {
      w.push_back(g.add_parameter("w" + std::to_string(k), k % 3 != 2));  // every third a buffer
      g.value(w.back()).tensors = {TensorMeta{{1 + k}, DType::kFloat32}};
    }
    std::vector<std::vector<ValueId>> reads(static_cast<size_t>(n));
    for (ValueId v : w) {
      const int readers = 1 + static_cast<int>(rng() % 3);
      for (int r = 0; r < readers; ++r) reads[rng() % static_cast<size_t>(n)].push_back(v);
    }
    for (int i = 0; i < n; ++i) {
      const ValueId y = g.add_value(ValueKind::kTensor, "y" + std::to_string(i));
      g.value(y).tensors = {TensorMeta{{1, 4}, DType::kFloat32}};
      std::vector<ValueId> inputs{x};
      inputs.insert(inputs.end(), reads[static_cast<size_t>(i)].begin(), reads[static_cast<size_t>(i)].end());
      const NodeId node = g.add_node("aten::add", inputs, {y});
      g.node(node).cost = OpCost{Flops(1e6), Bytes(0), Bytes(0), CostStatus::kEstimated};
      x = y;
    }
    g.set_outputs({x});
    const OneDevice d(g, Mode::kTraining);
    for (NodeId a = 0; a < n; ++a) {
      for (NodeId b = a; b < n; ++b) {
        int64_t read = 0, trainable = 0, owned = 0;
        for (ValueId v : w) {
          bool inside = false, outside = false;
          for (NodeId i = 0; i < n; ++i) {
            const auto& in = reads[static_cast<size_t>(i)];
            if (std::find(in.begin(), in.end(), v) == in.end()) continue;
            (i >= a && i <= b ? inside : outside) = true;
          }
          if (!inside) continue;
          const int64_t bytes = g.value(v).bytes().value();
          const bool train = g.value(v).role == ValueRole::kParameter;
          read += bytes;
          if (train) trainable += bytes;
          if (train && !outside) owned += bytes;
        }
        EXPECT_EQ(d.m.read_parameter_bytes(a, b).value(), read) << trial << " [" << a << ", " << b << "]";
        EXPECT_EQ(d.m.read_trainable_bytes(a, b).value(), trainable)
            << trial << " [" << a << ", " << b << "]";
        EXPECT_EQ(d.m.owned_trainable_bytes(a, b).value(), owned) << trial << " [" << a << ", " << b << "]";
      }
    }
  }
}

// A training forward can hold more than backward's start: a batch-first LSTM layer (8 x 50 x 8 -> 32) holds
// its projected sequence (4 x hidden per token) beside everything it saves, before any gradient exists. The
// device's peak is then state - gradients + forward_peak, and agrees with cost/memory.h's whole-graph
// estimate within 1% (the same facts, counted by storage there).
TEST(StageModel, ARecurrentLayersTrainingPeakComesInItsForward) {
  Graph g;
  const auto tensor = [&](ValueId id, std::vector<int64_t> dims) {
    g.value(id).tensors = {TensorMeta{std::move(dims), DType::kFloat32}};
    return id;
  };
  const auto constant = [&](const char* printed) { return g.add_constant(ValueKind::kScalar, printed); };
  const ValueId x = tensor(g.add_input("x"), {8, 50, 8});
  std::vector<ValueId> weights{
      tensor(g.add_parameter("w_ih", true), {128, 8}), tensor(g.add_parameter("w_hh", true), {128, 32}),
      tensor(g.add_parameter("b_ih", true), {128}), tensor(g.add_parameter("b_hh", true), {128})};
  const ValueId params = g.add_value(ValueKind::kList, "params");
  for (ValueId w : weights) g.value(params).tensors.push_back(g.value(w).tensors.at(0));
  g.add_node("prim::ListConstruct", weights, {params});
  const ValueId h0 = tensor(g.add_constant(ValueKind::kTensor, "h0"), {1, 8, 32});
  const ValueId hx = g.add_value(ValueKind::kList, "hx");
  g.value(hx).tensors = {g.value(h0).tensors.at(0), g.value(h0).tensors.at(0)};
  g.add_node("prim::ListConstruct", {h0, h0}, {hx});
  const ValueId y = tensor(g.add_value(ValueKind::kTensor, "y"), {8, 50, 32});
  const ValueId hy = tensor(g.add_value(ValueKind::kTensor, "hy"), {1, 8, 32});
  const ValueId cy = tensor(g.add_value(ValueKind::kTensor, "cy"), {1, 8, 32});
  g.add_node("aten::lstm",
             {x, hx, params, constant("True"), constant("1"), constant("0."), constant("True"),
              constant("False"), constant("True")},
             {y, hy, cy});
  g.set_outputs({y});
  const Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  SearchOptions training;
  training.mode = Mode::kTraining;
  training.optimizer = Optimizer::kSgd;
  const StageModel m(g, c, table_for(g, c), training);
  ASSERT_EQ(m.graph_batch(), 8);
  const NodeId last = g.num_nodes() - 1;
  const StageLoad load{0, last, 8, 1, Checkpointing::kNone, Offload::kNone, WeightHome::kHost, 0, 1};
  const double projected = 4.0 * 32 * 400 * 4, saved = 7.0 * 32 * 400 * 4;
  EXPECT_GE(m.forward_peak(load), projected + saved);
  double most = -1e300;  // the forward over time holds it in the layer's moment
  for (const StageModel::Moment& moment : m.forward_moments(0, load, kMomentsPerTask))
    most = std::max(most, moment.bytes);
  EXPECT_DOUBLE_EQ(most, m.forward_peak(load));
  const Bytes gradients = m.trainable_bytes(0, last);
  EXPECT_EQ(m.memory(load),
            m.model_state(load) - gradients + Bytes(static_cast<int64_t>(m.forward_peak(load))));
  const MemoryEstimate whole = estimate_memory(g, 0, last, true, Optimizer::kSgd, 1, 1.0, m.kernel_site(0));
  EXPECT_NEAR(static_cast<double>(m.memory(load).value()), static_cast<double>(whole.total().value()),
              0.01 * static_cast<double>(whole.total().value()));
  // Two microbatches in flight: the second forward runs beside the first's activations, still without
  // gradients (GPipe: every forward comes before the first backward).
  const StageLoad gpipe{0, last, 4, 2, Checkpointing::kNone, Offload::kNone, WeightHome::kHost, 0, 2};
  const double first_activations = m.activation(0, last).per_sample * 4;
  EXPECT_EQ(m.memory(gpipe), m.model_state(gpipe) - gradients +
                                 Bytes(static_cast<int64_t>(first_activations + m.forward_peak(gpipe))));
}

}  // namespace
}  // namespace partita

#include "partita/search/branch_strategy.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "partita/core/error.h"
#include "partita/search/graph_identity.h"
#include "partita/search/plan_json.h"
#include "partita/search/planner.h"
#include "partita/search/simulator.h"
#include "test_support.h"

namespace partita {
namespace {

using testing::make_cluster;
using testing::make_link;
using testing::make_spec;
using testing::table_for;

// x -> a (1 TFLOP) and x -> b (1 TFLOP), joined by a free add. Branch outputs hold `floats` f32 values.
Graph two_branches(int64_t floats) {
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 16}, DType::kFloat32}};
  std::vector<ValueId> ys;
  for (const char* name : {"a", "b"}) {
    const ValueId w = g.add_parameter(std::string("w") + name, true);
    g.value(w).tensors = {TensorMeta{{1024}, DType::kFloat32}};
    const ValueId y = g.add_value(ValueKind::kTensor, std::string("y") + name);
    g.value(y).tensors = {TensorMeta{{1, floats}, DType::kFloat32}};
    const NodeId n = g.add_node("aten::linear", {x, w}, {y});
    g.node(n).cost = OpCost{Flops(1e12), Bytes(0), Bytes(0), CostStatus::kEstimated};
    ys.push_back(y);
  }
  const ValueId out = g.add_value(ValueKind::kTensor, "out");
  g.value(out).tensors = {TensorMeta{{1, floats}, DType::kFloat32}};
  const NodeId j = g.add_node("aten::add", {ys[0], ys[1]}, {out});
  g.node(j).cost = OpCost{Flops(0), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.set_outputs({out});
  return g;
}

// A branch plan of two_branches: a and the add on d0, b on d1, one microbatch of one sample.
Plan a_and_join_on_d0_b_on_d1(const Graph& g, Mode mode) {
  Plan p;
  p.graph = graph_identity(g);
  p.mode = mode;
  p.strategy = StrategyKind::kBranch;
  p.global_batch = 1;
  p.microbatches = 1;
  p.groups = {DeviceGroup{{"d0"}, {1}}, DeviceGroup{{"d1"}, {1}}};
  p.stages = {Stage{0, 2, 0}, Stage{1, 1, 1}};
  p.stages[0].nodes = {0, 2};
  p.stages[1].nodes = {1};
  return p;
}

SearchOptions options_for(Mode mode) {
  SearchOptions o;
  o.mode = mode;
  o.global_batch = 1;
  o.strategy = StrategyKind::kBranch;
  return o;
}

// Two equal branches on two equal devices: the makespan halves, plus one transfer of a branch output (4 MB
// over 1 GB/s = 4 ms) to the device that joins them.
TEST(BranchStrategy, TwoEqualBranchesOnTwoEqualDevicesHalveTheMakespan) {
  const Graph g = two_branches(1'000'000);
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const SearchOptions o = options_for(Mode::kInference);
  const StageModel model(g, c, t, o);
  const BranchSchedule s = heft_schedule(model, {0, 1}, 1);
  EXPECT_NE(s.device_of[0], s.device_of[1]);
  EXPECT_NEAR(s.makespan.value(), 1.004, 1e-9);
  const PlanOutcome out = make_plan(g, c, t, o);
  ASSERT_TRUE(out.plan) << out.error;
  const Plan& p = *out.plan;
  EXPECT_EQ(p.strategy, StrategyKind::kBranch);
  ASSERT_EQ(p.stages.size(), 2u);
  EXPECT_NEAR(p.prediction.step_time.value(), 1.004, 1e-9);  // single device: 2 s
  // The plan round-trips through JSON and simulates to the same prediction.
  const Plan q = plan_from_json(plan_to_json(p));
  EXPECT_EQ(q.stages[0].nodes, p.stages[0].nodes);
  EXPECT_DOUBLE_EQ(simulate(q, g, c, t, o).step_time.value(), p.prediction.step_time.value());
}

// Device d's predicted peak beyond its model state.
int64_t working(const Simulation& sim, size_t d) {
  return (sim.prediction.devices[d].peak_memory - sim.prediction.devices[d].model_state).value();
}

// Inference memory: each device holds what is alive at once along its own node list: device 0 runs a and
// the add (x 64 B and ya, then ya, the received yb and out); device 1 runs b (x and yb, handed over once
// made). Before, every value a device receives was counted beside its largest op's inputs and outputs.
TEST(BranchStrategy, InferenceMemoryFollowsEachDevicesOwnNodeList) {
  const Graph g = two_branches(1000);
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const Plan p = a_and_join_on_d0_b_on_d1(g, Mode::kInference);
  const Simulation sim = simulate(p, g, c, t, options_for(Mode::kInference));
  ASSERT_EQ(sim.prediction.devices.size(), 2u);
  EXPECT_EQ(working(sim, 0), 3 * 4000);
  EXPECT_EQ(working(sim, 1), 64 + 4000);
}

// two_branches(1000) with a 1 ms add, as a_and_join_on_d0_b_on_d1 on two CPU devices of one machine.
Simulation two_branches_on_two_cpus(Mode mode) {
  Graph g = two_branches(1000);
  g.node(2).cost = OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  const Cluster c = testing::uniform_cluster(2, DeviceKind::kCpu);
  return simulate(a_and_join_on_d0_b_on_d1(g, mode), g, c, table_for(g, c), options_for(mode));
}

// Training on two CPU devices of one machine: the host holds what both hold at once over the simulated
// timeline, not the sum of each device's own peak. d0 runs a then the add (1 ms forward, 2 ms backward), d1
// runs b; a, b: 1 s forward, 2 s backward. Nothing is saved (the linears save only x, the add nothing), so:
//   - ya (4000 B) crosses from a's segment to the add's on d0 and yb (4000 B) from d1 to d0: each one storage
//     held for backward from its forward's end until the add's backward ends and its producer's backward
//     starts (the engine hands the roots to autograd and keeps none);
//   - the loss's backward (two tensors of the output's size, 8000 B) and then the add's (its output's
//     gradient, 4000 B, handed to both inputs) run beside the loss, 4000 B, and its 8-byte class index
//     target, while the weights' gradients are not made yet (wa, wb: 4096 B each, counted in the model
//     state);
//   - then a's and b's backwards run together (their outputs' gradients, 4000 B each: x, a user input, gets
//     none) beside the gradients of ya and yb (4000 B each, from the add's backward until a's and b's end)
//     and every weight gradient.
// Peak: x 64 + the gradients of ya and yb 8000 + the two backwards 8000 = 16064 B (at the loss's backward:
// 64 + ya, yb 8000 + 8000 + 4008 - 8192 = 11880; before the engine released the roots, ya and yb stayed
// through a's and b's backwards: 24064). d0 alone: x, both gradients (they come back to it) and a's
// backward: 12064; d1: b's backward: 4000.
TEST(BranchStrategy, TrainingHostMemoryIsWhatTheCpuDevicesHoldAtOnce) {
  const Simulation sim = two_branches_on_two_cpus(Mode::kTraining);
  ASSERT_EQ(sim.prediction.hosts.size(), 1u);
  EXPECT_EQ(sim.prediction.hosts[0].cpu_working.value(), 16064);
  ASSERT_EQ(sim.prediction.devices.size(), 2u);
  EXPECT_EQ(working(sim, 0), 12064);
  EXPECT_EQ(working(sim, 1), 4000);
}

// The same plan for `partita launch`: each device in a process of its own, so yb is copied into d0's
// process and its gradient back into d1's. d0 at its peak, the loss's backward: x 64 + ya 4000 + its copy of
// yb 4000 + the loss and its target 4008 + the loss's two tensors of the output's size 8000, less wa's
// gradient not made yet (4096): 15976 B (yb is no longer counted on d1 alone). d1: its yb until b's backward
// starts (4000, while wb's gradient is not made: 4000 - 4096 < 0), then its copy of yb's gradient beside b's
// backward: 8000.
TEST(BranchStrategy, LaunchedDevicesHoldTheirOwnCopiesOfWhatCrossesProcesses) {
  Graph g = two_branches(1000);
  g.node(2).cost = OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  Plan p = a_and_join_on_d0_b_on_d1(g, Mode::kTraining);
  p.processes = ProcessLayout::kLaunch;
  const Cluster c = testing::uniform_cluster(2, DeviceKind::kCpu);
  SearchOptions o = options_for(Mode::kTraining);
  o.process_links = ProcessLinks{make_link(10, 0), make_link(10, 0)};  // their speed does not matter here
  const Simulation sim = simulate(p, g, c, table_for(g, c), o);
  ASSERT_EQ(sim.prediction.devices.size(), 2u);
  EXPECT_EQ(working(sim, 0), 64 + 4000 + 4000 + 4008 + 8000 - 4096);
  EXPECT_EQ(working(sim, 1), 8000);
}

// two_branches(1000) whose sum a linear widens to 8000 scores (the graph's output, on d0 with a and the add;
// a weight of 32 B): the loss's backward, the first part of the head's backward task, holds the log-softmax
// it kept and two tensors of the scores' size beside it, more than the head's own backward (the scores'
// gradient, 32000 B, and the sum's, 4000 B), and before any weight gradient is made.
TEST(BranchStrategy, TheLossBackwardOfAWideOutputIsPartOfTheLastNodesBackward) {
  Graph g = two_branches(1000);
  g.node(2).cost = OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  const ValueId w = g.add_parameter("wh", true);
  g.value(w).tensors = {TensorMeta{{8}, DType::kFloat32}};
  const ValueId scores = g.add_value(ValueKind::kTensor, "scores");
  g.value(scores).tensors = {TensorMeta{{1, 8000}, DType::kFloat32}};
  const NodeId head = g.add_node("aten::linear", {g.outputs().front(), w}, {scores});
  g.node(head).cost = OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.set_outputs({scores});
  Plan p = a_and_join_on_d0_b_on_d1(g, Mode::kTraining);
  p.stages[0].nodes = {0, 2, head};
  const Cluster c = testing::uniform_cluster(2, DeviceKind::kCpu);
  const Simulation sim = simulate(p, g, c, table_for(g, c), options_for(Mode::kTraining));
  ASSERT_EQ(sim.prediction.hosts.size(), 1u);
  // At the loss's backward: x (64 B), the sum the head saved (4000 B), ya and yb (8000 B), the target (8 B),
  // the log-softmax and two tensors of the scores' size (96000 B), less the weight gradients not made yet
  // (wa, wb 4096 B each, wh 32 B: counted in the model state). Without the loss's moment the peak was the
  // head's own backward: 64 + 4000 + 8000 + 32008 + 36000 - 8192 = 71880.
  EXPECT_EQ(sim.prediction.hosts[0].cpu_working.value(), 64 + 4000 + 8000 + 8 + 96000 - 8192 - 32);
}

// Inference on two CPU devices of one machine: a and b run together (1 s), then the add on d0 (1 ms). yb is
// one storage for both devices (counted on d1, which made it); the output stays until the engine gathers it
// after the step (one microbatch: returned as it is, no copy). Peak during the add: x 64 + ya, yb 8000 + out
// 4000 = 12064 B (the sum of each device's own walk along its list was 12000 + 64 + 4000); d0 alone 8064 (x,
// ya and the output), d1 4000 (yb).
TEST(BranchStrategy, InferenceHostMemoryIsWhatTheCpuDevicesHoldAtOnce) {
  const Simulation sim = two_branches_on_two_cpus(Mode::kInference);
  ASSERT_EQ(sim.prediction.hosts.size(), 1u);
  EXPECT_EQ(sim.prediction.hosts[0].cpu_working.value(), 12064);
  ASSERT_EQ(sim.prediction.devices.size(), 2u);
  EXPECT_EQ(working(sim, 0), 8064);
  EXPECT_EQ(working(sim, 1), 4000);
}

// The engine returns a single microbatch's output as it is (engine_branch.cpp, BranchRunner::outputs): no
// gathered copy. With the output 4x larger (16000 B), the peak is during the add: x 64 + ya, yb 8000 + out
// 16000 = 24064 B; a copy after the step would have made it 64 + 16000 + 16000 = 32064 (gpt's branch plan was
// predicted 32.19 MiB against 25.19 measured, its logits' copy).
TEST(BranchStrategy, ASingleMicrobatchsOutputIsNotCopiedWhenGathered) {
  Graph g = two_branches(1000);
  g.node(2).cost = OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.value(g.outputs()[0]).tensors = {TensorMeta{{1, 4000}, DType::kFloat32}};
  const Cluster c = testing::uniform_cluster(2, DeviceKind::kCpu);
  const Simulation sim = simulate(a_and_join_on_d0_b_on_d1(g, Mode::kInference), g, c, table_for(g, c),
                                  options_for(Mode::kInference));
  ASSERT_EQ(sim.prediction.hosts.size(), 1u);
  EXPECT_EQ(sim.prediction.hosts[0].cpu_working.value(), 24064);
}

// Training: forwards overlap (1 s), the joined gradient goes back (4 ms), backwards overlap (2 s each).
TEST(BranchStrategy, TrainingStepOverlapsBothPasses) {
  const Graph g = two_branches(1'000'000);
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const PlanOutcome out = make_plan(g, c, t, options_for(Mode::kTraining));
  ASSERT_TRUE(out.plan) << out.error;
  EXPECT_EQ(out.plan->stages.size(), 2u);
  EXPECT_NEAR(out.plan->prediction.step_time.value(), 3.008, 1e-9);  // single device: 6 s
}

// A slow link makes the split not pay: greedy HEFT splits anyway (1 s + 4 s transfer), the candidate keeps
// both branches on one device (2 s).
TEST(BranchStrategy, SlowLinkKeepsEverythingOnOneDevice) {
  const Graph g = two_branches(1'000'000'000);  // 4 GB per branch output over 1 GB/s: 4 s > 1 s saved
  const Cluster c = make_cluster({make_spec("gpu", 1, 1000), make_spec("gpu", 1, 1000)}, make_link(1));
  const CostTable t = table_for(g, c);
  const SearchOptions o = options_for(Mode::kInference);
  const StageModel model(g, c, t, o);
  EXPECT_NEAR(heft_schedule(model, {0, 1}, 1).makespan.value(), 5.0, 1e-9);
  const PlanOutcome out = make_plan(g, c, t, o);
  ASSERT_TRUE(out.plan) << out.error;
  EXPECT_EQ(out.plan->stages.size(), 1u);
  EXPECT_NEAR(out.plan->prediction.step_time.value(), 2.0, 1e-9);
}

// Under --strategy auto that one-device branch plan is not offered: the data-parallel strategy's one-device
// plan is the same work.
TEST(BranchStrategy, AutoOffersNoOneDeviceBranchPlan) {
  const Graph g = two_branches(1'000'000'000);
  const Cluster c = make_cluster({make_spec("gpu", 1, 1000), make_spec("gpu", 1, 1000)}, make_link(1));
  const CostTable t = table_for(g, c);
  SearchOptions o = options_for(Mode::kInference);
  ASSERT_FALSE(generate_candidates(g, c, t, o).empty());
  EXPECT_EQ(generate_candidates(g, c, t, o).front().stages.size(), 1u);
  o.strategy = StrategyKind::kAuto;
  const std::vector<Plan> all = generate_candidates(g, c, t, o);
  EXPECT_TRUE(std::any_of(all.begin(), all.end(), [](const Plan& p) {
    return p.strategy == StrategyKind::kData && p.used_devices().size() == 1;
  })) << "the one-device plan should still be offered";
  for (const Plan& p : all) {
    if (p.strategy == StrategyKind::kBranch) {
      EXPECT_GE(p.stages.size(), 2u);
    }
  }
  const PlanOutcome out = make_plan(g, c, t, o);
  ASSERT_TRUE(out.plan) << out.error;
  EXPECT_NEAR(out.plan->prediction.step_time.value(), 2.0, 1e-9);
}

// A faster device takes the heavier work: 3 TFLOP/s and 1 TFLOP/s with branches of 3 and 1 TFLOP.
TEST(BranchStrategy, UnequalDevicesGetWorkByEarliestFinish) {
  Graph g = two_branches(1000);
  g.node(0).cost.flops = Flops(3e12);
  const Cluster c = make_cluster({make_spec("slow", 1), make_spec("fast", 3)}, make_link(100));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, options_for(Mode::kInference));
  const BranchSchedule s = heft_schedule(model, {0, 1}, 1);
  EXPECT_EQ(s.device_of[0], 1);  // the 3 TFLOP branch on the fast device: 1 s
  EXPECT_EQ(s.device_of[1], 0);  // the 1 TFLOP branch on the slow device: 1 s
  EXPECT_NEAR(s.makespan.value(), 1.0, 1e-6);
}

// h = linear(x); s = h.sum(); h.relu_(); head(h) + s: the sum reads h before the in-place relu_ writes it,
// and nothing but node order says so. HEFT ranks relu_ (a long chain after it) above the sum; on one device
// the sum must still come first (the branch runner refuses a list with the write first).
TEST(BranchStrategy, AReaderOfAStorageStaysBeforeItsInPlaceWriteOnOneDevice) {
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 16}, DType::kFloat32}};
  const auto node = [&](const std::string& op, std::vector<ValueId> in, double flops) {
    const ValueId out = g.add_value(ValueKind::kTensor, "");
    g.value(out).tensors = {TensorMeta{{1, 16}, DType::kFloat32}};
    const NodeId n = g.add_node(op, std::move(in), {out});
    g.node(n).cost = OpCost{Flops(flops), Bytes(0), Bytes(0), CostStatus::kEstimated};
    return out;
  };
  const ValueId h = node("aten::linear", {x}, 1e12);     // n0
  const ValueId sum = node("aten::sum", {h}, 1e9);       // n1: reads h before the write
  const ValueId r = node("aten::relu_", {h}, 1e9);       // n2: writes h
  const ValueId head = node("aten::linear", {r}, 5e12);  // n3
  g.set_outputs({node("aten::add", {head, sum}, 0)});    // n4
  const Cluster c = make_cluster({make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, options_for(Mode::kInference));
  const std::vector<NodeId> order = heft_schedule(model, {0}, 1).order[0];
  ASSERT_EQ(order.size(), 5u);
  const auto at = [&](NodeId n) { return std::find(order.begin(), order.end(), n) - order.begin(); };
  EXPECT_LT(at(1), at(2)) << "the sum must read h before relu_ writes it";
}

TEST(BranchStrategy, RefusesNodeListsThatContradictTheGraph) {
  const Graph g = two_branches(1000);
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const PlanOutcome out = make_plan(g, c, t, options_for(Mode::kInference));
  ASSERT_TRUE(out.plan);
  Plan p = *out.plan;
  p.stages[0].nodes.push_back(p.stages[0].nodes.front());
  EXPECT_THROW(p.check_against(g), Error);
  Plan reversed = *out.plan;
  std::vector<NodeId> all{2, 0, 1};  // the join before the branches
  reversed.stages = {reversed.stages[0]};
  reversed.stages[0].nodes = all;
  reversed.groups = {reversed.groups[0]};
  EXPECT_THROW(reversed.check_against(g), Error);
}

}  // namespace
}  // namespace partita

#include "partita/search/tensor_strategy.h"

#include <gtest/gtest.h>

#include "partita/search/planner.h"
#include "partita/search/simulator.h"
#include "partita/search/tensor_model.h"
#include "test_support.h"

namespace partita {
namespace {

using testing::make_cluster;
using testing::make_link;
using testing::make_spec;
using testing::table_for;

// x -> linear (1 TFLOP, weight [1024, 16]) -> relu -> linear (1 TFLOP, weight [16, 1024]) -> out of `floats`.
Graph mlp_pair(int64_t floats) {
  Graph g;
  ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 16}, DType::kFloat32}};
  auto add = [&](const char* op, std::vector<int64_t> weight, int64_t out, double flops) {
    std::vector<ValueId> in{x};
    if (!weight.empty()) {
      const ValueId w = g.add_parameter(std::string("w") + std::to_string(g.num_nodes()), true);
      g.value(w).tensors = {TensorMeta{weight, DType::kFloat32}};
      in.push_back(w);
    }
    const ValueId y = g.add_value(ValueKind::kTensor, "y");
    g.value(y).tensors = {TensorMeta{{1, out}, DType::kFloat32}};
    const NodeId n = g.add_node(op, in, {y});
    g.node(n).cost = OpCost{Flops(flops), Bytes(0), Bytes(0), CostStatus::kEstimated};
    x = y;
  };
  add("aten::linear", {1024, 16}, 1024, 1e12);
  add("aten::relu", {}, 1024, 0);
  add("aten::linear", {16, 1024}, floats, 1e12);
  g.set_outputs({x});
  return g;
}

SearchOptions tensor_options(Mode mode) {
  SearchOptions o;
  o.mode = mode;
  o.global_batch = 1;
  o.strategy = StrategyKind::kTensor;
  return o;
}

TEST(TensorModel, SplitsColumnThenRowAndAllReducesOnce) {
  const Graph g = mlp_pair(250'000);
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, tensor_options(Mode::kInference));
  const TensorModel tm(model);
  EXPECT_TRUE(tm.split(0) && tm.split(1) && tm.split(2));
  EXPECT_FALSE(tm.all_reduce_after(0));
  EXPECT_TRUE(tm.all_reduce_after(2));
  // One ring all-reduce of 1 MB over 2 devices at 1 GB/s: 2 (p-1)/p * 1e6 / 1e9 = 1 ms.
  EXPECT_NEAR(tm.communication(0, 2, 1, 2, make_link(1)).value(), 1e-3, 1e-12);
  // Both weights are split: each device holds half.
  EXPECT_EQ(tm.static_memory(0, 2, 1, 2).value() * 2,
            model.parameter_bytes(0, 2).value() + static_cast<int64_t>(model.workspace_per_sample(0, 2)));
}

// 2 TFLOP of matmuls on two 1 TFLOP/s devices: 1 s of compute each plus the 1 ms all-reduce (one device: 2
// s).
TEST(TensorStrategy, TwoDevicesHalveTheMatmulsPlusOneAllReduce) {
  const Graph g = mlp_pair(250'000);
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const PlanOutcome out = make_plan(g, c, t, tensor_options(Mode::kInference));
  ASSERT_TRUE(out.plan) << out.error;
  EXPECT_EQ(out.plan->strategy, StrategyKind::kTensor);
  ASSERT_EQ(out.plan->groups.size(), 1u);
  EXPECT_EQ(out.plan->groups[0].parallelism, GroupParallelism::kTensor);
  EXPECT_NEAR(out.plan->prediction.step_time.value(), 1.001, 1e-9);
}

// Training: forward 1 s + 1 ms, backward (matmul ratio 2) 2 s + 1 ms for the input gradient's all-reduce.
TEST(TensorStrategy, TrainingAllReducesInBothPasses) {
  const Graph g = mlp_pair(250'000);
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const PlanOutcome out = make_plan(g, c, t, tensor_options(Mode::kTraining));
  ASSERT_TRUE(out.plan) << out.error;
  EXPECT_NEAR(out.plan->prediction.step_time.value(), 3.002, 1e-9);
}

TEST(TensorStrategy, NeedsTwoDevicesOfOneKind) {
  const Graph g = mlp_pair(1000);
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("b", 2)}, make_link(1));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, tensor_options(Mode::kInference));
  EXPECT_TRUE(tensor_candidates(model).empty());
  const PlanOutcome out = make_plan(g, c, t, tensor_options(Mode::kInference));
  EXPECT_FALSE(out.plan);
  EXPECT_NE(out.error.find("strategy 'tensor' has nothing to offer"), std::string::npos);
}

}  // namespace
}  // namespace partita

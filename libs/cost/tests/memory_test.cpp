#include "partita/cost/memory.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

// x f32[8,100] -> linear(w[100,100], b[100]) -> y -> relu -> z -> view -> v f32[800] -> add(rm buffer) -> o
Graph mlp() {
  Graph g;
  const auto set = [&](ValueId id, std::vector<int64_t> shape) {
    g.value(id).tensors = {TensorMeta{shape, DType::kFloat32}};
  };
  const ValueId x = g.add_input("x");
  set(x, {8, 100});
  const ValueId w = g.add_parameter("w", true);
  set(w, {100, 100});
  const ValueId b = g.add_parameter("b", true);
  set(b, {100});
  const ValueId rm = g.add_parameter("rm", false);
  set(rm, {800});
  const ValueId y = g.add_value(ValueKind::kTensor, "y"), z = g.add_value(ValueKind::kTensor, "z");
  const ValueId v = g.add_value(ValueKind::kTensor, "v"), o = g.add_value(ValueKind::kTensor, "o");
  set(y, {8, 100});
  set(z, {8, 100});
  set(v, {800});
  set(o, {800});
  g.add_node("aten::linear", {x, w, b}, {y});
  g.add_node("aten::relu", {y}, {z});
  g.add_node("aten::view", {z}, {v});
  g.add_node("aten::add", {v, rm}, {o});
  return g;
}

TEST(Memory, OptimizerState) {
  EXPECT_EQ(optimizer_state_bytes(Bytes(1000), Optimizer::kSgd).value(), 0);
  EXPECT_EQ(optimizer_state_bytes(Bytes(1000), Optimizer::kSgdMomentum).value(), 1000);
  EXPECT_EQ(optimizer_state_bytes(Bytes(1000), Optimizer::kAdam).value(), 2000);
  EXPECT_EQ(optimizer_state_bytes(Bytes(1000), Optimizer::kAdamW).value(), 2000);
  EXPECT_EQ(parse_optimizer("adamw"), Optimizer::kAdamW);
  EXPECT_THROW(parse_optimizer("lamb"), Error);
}

TEST(Memory, SavedActivations) {
  const Graph g = mlp();
  // x (from outside) + y + z + o, 3200 B each; the view saves nothing.
  EXPECT_EQ(saved_activation_bytes(g, 0, 3).value(), 12800);
  // y enters from node 0, z produced inside, view skipped.
  EXPECT_EQ(saved_activation_bytes(g, 1, 2).value(), 6400);
  EXPECT_THROW(saved_activation_bytes(g, 2, 1), Error);
  EXPECT_THROW(saved_activation_bytes(g, 0, 4), Error);
}

TEST(Memory, ParameterBytesOfARange) {
  const Graph g = mlp();
  EXPECT_EQ(range_parameter_bytes(g, 0, 3, true).value(), 40400);   // w 40000 + b 400
  EXPECT_EQ(range_parameter_bytes(g, 0, 3, false).value(), 43600);  // + rm 3200
  EXPECT_EQ(range_parameter_bytes(g, 1, 2, false).value(), 0);
}

TEST(Memory, TrainingEstimate) {
  const MemoryEstimate m = estimate_memory(mlp(), 0, 3, true, Optimizer::kAdam, 2, 0.5);
  EXPECT_EQ(m.parameters.value(), 43600);
  EXPECT_EQ(m.gradients.value(), 40400);
  EXPECT_EQ(m.optimizer_state.value(), 80800);
  EXPECT_EQ(m.activations.value(), 12800);  // 12800 x 2 microbatches x 0.5
  EXPECT_EQ(m.workspace.value(), 3200);     // largest node io 6400 x 0.5
  EXPECT_EQ(m.total().value(), 43600 + 40400 + 80800 + 12800 + 3200);
}

TEST(Memory, InferenceEstimate) {
  const MemoryEstimate m = estimate_memory(mlp(), 0, 3, false, Optimizer::kAdam, 1, 1.0);
  EXPECT_EQ(m.gradients.value(), 0);
  EXPECT_EQ(m.optimizer_state.value(), 0);
  EXPECT_EQ(m.activations.value(), 3200);  // the range's input x
  EXPECT_EQ(m.workspace.value(), 6400);
  EXPECT_EQ(m.total().value(), 43600 + 3200 + 6400);
  EXPECT_THROW(estimate_memory(mlp(), 0, 3, false, Optimizer::kSgd, 0, 1.0), Error);
  EXPECT_THROW(estimate_memory(mlp(), 0, 3, false, Optimizer::kSgd, 1, 1.5), Error);
}

}  // namespace
}  // namespace partita

#include "partita/graph/op_cost.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "test_graphs.h"

namespace partita {
namespace {

using namespace partita::testing;

OpCost cost_of_last(const Graph& g) { return estimate_cost(g, g.num_nodes() - 1); }
ValueId flag(Graph& g, bool b) { return g.add_constant(ValueKind::kScalar, b ? "True" : "False"); }

TEST(OpCost, ElementwiseIsOnePerOutputElementInPlaceToo) {
  Graph g;
  const ValueId x = input(g, {2, 3});
  op(g, "aten::relu_", {x}, {2, 3});
  const OpCost c = cost_of_last(g);
  EXPECT_EQ(c.status, CostStatus::kEstimated);
  EXPECT_EQ(c.flops, Flops(6));
  EXPECT_EQ(c.bytes_read, Bytes(24));
  EXPECT_EQ(c.bytes_written, Bytes(24));
}

TEST(OpCost, BroadcastBinaryReadsBothInputs) {
  Graph g;
  const ValueId a = input(g, {2, 3});
  const ValueId b = input(g, {3}, "b");
  op(g, "aten::add", {a, b, int_constant(g, "1")}, {2, 3});
  const OpCost c = cost_of_last(g);
  EXPECT_EQ(c.flops, Flops(6));
  EXPECT_EQ(c.bytes_read, Bytes(36));
  EXPECT_EQ(c.bytes_written, Bytes(24));
}

TEST(OpCost, TranscendentalsUseDocumentedCounts) {
  Graph g;
  const ValueId x = input(g, {2, 3});
  op(g, "aten::gelu", {x, g.add_constant(ValueKind::kOther, "'none'")}, {2, 3});
  EXPECT_EQ(cost_of_last(g).flops, Flops(48));
  op(g, "aten::sigmoid", {x}, {2, 3});
  EXPECT_EQ(cost_of_last(g).flops, Flops(24));
}

// Interpolation counts a weighted sum of the 2^d neighbours per output element; nearest upsampling, pixel
// shuffles and one_hot move bytes; tensor_split and meshgrid are views.
TEST(OpCost, ResamplingGatedActivationsAndViewsOfRealModels) {
  Graph g;
  const ValueId x = input(g, {1, 2, 4, 4});
  op(g, "aten::upsample_bilinear2d", {x, list_constant(g, "[8, 8]"), flag(g, false), none(g)}, {1, 2, 8, 8});
  EXPECT_EQ(cost_of_last(g).flops, Flops(128 * 7));
  op(g, "aten::upsample_nearest2d", {x, list_constant(g, "[8, 8]"), none(g)}, {1, 2, 8, 8});
  OpCost c = cost_of_last(g);
  EXPECT_EQ(c.status, CostStatus::kEstimated);
  EXPECT_EQ(c.flops, Flops(0));
  EXPECT_EQ(c.bytes_read, Bytes(128));
  EXPECT_EQ(c.bytes_written, Bytes(512));
  op(g, "aten::pixel_shuffle", {input(g, {1, 8, 2, 2}, "ps"), int_constant(g, "2")}, {1, 2, 4, 4});
  EXPECT_EQ(cost_of_last(g).flops, Flops(0));
  EXPECT_EQ(cost_of_last(g).bytes_written, Bytes(128));
  // glu halves its input: a sigmoid (4) and a multiply per output element.
  op(g, "aten::glu", {input(g, {2, 8}, "gated"), int_constant(g, "-1")}, {2, 4});
  EXPECT_EQ(cost_of_last(g).flops, Flops(8 * 5));
  op(g, "aten::log_sigmoid", {input(g, {2, 3}, "ls")}, {2, 3});
  EXPECT_EQ(cost_of_last(g).flops, Flops(6 * 5));
  // affine_grid for 4x4 points: 3 multiply-adds per output coordinate.
  op(g, "aten::affine_grid_generator",
     {input(g, {1, 2, 3}, "theta"), list_constant(g, "[1, 1, 4, 4]"), flag(g, false)}, {1, 4, 4, 2});
  EXPECT_EQ(cost_of_last(g).flops, Flops(32 * 6));
  const ValueId parts = g.add_value(ValueKind::kList, "parts");
  g.add_node("aten::tensor_split", {x, int_constant(g, "2"), int_constant(g, "1")}, {parts});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kStructural);
  const ValueId grids = g.add_value(ValueKind::kList, "grids");
  g.add_node("aten::meshgrid", {list_constant(g, "[]"), g.add_constant(ValueKind::kOther, "'ij'")}, {grids});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kStructural);
}

TEST(OpCost, IntegerSizeArithmeticIsStructural) {
  Graph g;
  const ValueId a = g.add_value(ValueKind::kScalar, "n");
  const ValueId x = input(g, {4, 4});
  g.add_node("aten::size", {x, int_constant(g, "0")}, {a});
  const ValueId b = g.add_value(ValueKind::kScalar, "m");
  g.add_node("aten::mul", {a, int_constant(g, "2")}, {b});
  EXPECT_EQ(estimate_cost(g, 0).status, CostStatus::kStructural);
  const OpCost c = cost_of_last(g);
  EXPECT_EQ(c.status, CostStatus::kStructural);
  EXPECT_EQ(c.flops, Flops(0));
}

TEST(OpCost, ViewLikeOpsAreStructuralAndFree) {
  Graph g;
  const ValueId x = input(g, {2, 3, 4});
  op(g, "aten::view", {x, list_constant(g, "[6, 4]")}, {6, 4});
  const OpCost c = cost_of_last(g);
  EXPECT_EQ(c.status, CostStatus::kStructural);
  EXPECT_EQ(c.bytes_read, Bytes(0));
  EXPECT_EQ(c.bytes_written, Bytes(0));
  op(g, "aten::transpose", {x, int_constant(g, "0"), int_constant(g, "1")}, {3, 2, 4});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kStructural);
}

TEST(OpCost, CopiesCostBytesNotFlops) {
  Graph g;
  const ValueId a = input(g, {2, 3});
  const ValueId b = input(g, {2, 3}, "b");
  const ValueId list = g.add_value(ValueKind::kList, "");
  g.value(list).tensors = {TensorMeta{{2, 3}}, TensorMeta{{2, 3}}};
  g.add_node("prim::ListConstruct", {a, b}, {list});
  op(g, "aten::cat", {list, int_constant(g, "0")}, {4, 3});
  const OpCost c = cost_of_last(g);
  EXPECT_EQ(c.status, CostStatus::kEstimated);
  EXPECT_EQ(c.flops, Flops(0));
  EXPECT_EQ(c.bytes_read, Bytes(48));
  EXPECT_EQ(c.bytes_written, Bytes(48));
}

TEST(OpCost, DropoutIsIdentityInEval) {
  Graph g;
  const ValueId x = input(g, {2, 3});
  const ValueId p = g.add_constant(ValueKind::kScalar, "0.1");
  op(g, "aten::dropout", {x, p, g.add_constant(ValueKind::kScalar, "False")}, {2, 3});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kStructural);
  op(g, "aten::dropout", {x, p, g.add_constant(ValueKind::kScalar, "True")}, {2, 3});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kEstimated);
  EXPECT_EQ(cost_of_last(g).flops, Flops(12));
}

TEST(OpCost, ToIsStructuralOnlyWithoutDtypeChange) {
  Graph g;
  const ValueId x = input(g, {2, 3});
  op(g, "aten::to", {x, int_constant(g, "6")}, {2, 3});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kStructural);
  const ValueId half = tensor(g, {2, 3}, DType::kFloat16);
  g.add_node("aten::to", {x, int_constant(g, "5")}, {half});
  const OpCost c = cost_of_last(g);
  EXPECT_EQ(c.status, CostStatus::kEstimated);
  EXPECT_EQ(c.bytes_read, Bytes(24));
  EXPECT_EQ(c.bytes_written, Bytes(12));
}

TEST(OpCost, ReductionsCountInputElements) {
  Graph g;
  const ValueId a = input(g, {2, 3});
  const ValueId b = input(g, {2, 3}, "b");
  op(g, "aten::sum", {a, none(g)}, {});
  EXPECT_EQ(cost_of_last(g).flops, Flops(6));
  op(g, "aten::mean", {a, list_constant(g, "[1]"), g.add_constant(ValueKind::kScalar, "False"), none(g)},
     {2});
  EXPECT_EQ(cost_of_last(g).flops, Flops(6));
  op(g, "aten::max", {a, b}, {2, 3});  // elementwise overload
  EXPECT_EQ(cost_of_last(g).flops, Flops(6));
  // Norms as traces record them (torch.norm(x, dim=1) is frobenius_norm): they had no estimate.
  const ValueId f = g.add_constant(ValueKind::kScalar, "False");
  op(g, "aten::frobenius_norm", {a, list_constant(g, "[1]"), f}, {2});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kEstimated);
  EXPECT_EQ(cost_of_last(g).flops, Flops(6));
  for (const char* norm : {"aten::linalg_vector_norm", "aten::linalg_norm"}) {
    op(g, norm, {a, g.add_constant(ValueKind::kScalar, "2"), list_constant(g, "[1]"), f, none(g)}, {2});
    EXPECT_EQ(cost_of_last(g).flops, Flops(6)) << norm;
  }
}

TEST(OpCost, UnknownOpsAndMissingShapesAreNoEstimate) {
  Graph g;
  const ValueId x = input(g, {2, 3});
  op(g, "aten::fft_fft", {x}, {2, 3});
  const ValueId unknown_shape = g.add_value(ValueKind::kTensor, "y");
  g.add_node("aten::relu", {x}, {unknown_shape});
  op(g, "aten::relu", {x}, {2, 3});
  op(g, "custom::thing", {x}, {2, 3});
  op(g, "aten::fft_fft", {x}, {2, 3});
  estimate_costs(g);
  EXPECT_EQ(g.node(0).cost.status, CostStatus::kNoEstimate);
  EXPECT_EQ(g.node(0).cost.flops, Flops(0));
  EXPECT_EQ(g.node(1).cost.status, CostStatus::kNoEstimate);
  EXPECT_EQ(g.node(2).cost.status, CostStatus::kEstimated);
  EXPECT_EQ(ops_without_estimate(g),
            (std::vector<std::string>{"aten::fft_fft", "aten::relu", "custom::thing"}));
  EXPECT_EQ(g.total_flops(), Flops(6));
}

// A recurrent layer's kernel calls: per step, layer and direction LSTM 11, GRU 12, Elman 3, plus 2 per layer
// and direction (input projection, output stack); anything else is refused.
TEST(OpCost, RecurrentKernelCallsPerStepLayerAndDirection) {
  EXPECT_EQ(recurrent_kernel_calls("aten::lstm", 10, 1), 112);
  EXPECT_EQ(recurrent_kernel_calls("aten::lstm", 10, 4), 448);  // 2 layers, bidirectional
  EXPECT_EQ(recurrent_kernel_calls("aten::gru", 5, 1), 62);
  EXPECT_EQ(recurrent_kernel_calls("aten::rnn_tanh", 5, 2), 34);
  EXPECT_EQ(recurrent_kernel_calls("aten::rnn_relu", 0, 1), 2);
  EXPECT_THROW(recurrent_kernel_calls("aten::linear", 5, 1), Error);
  EXPECT_THROW(recurrent_kernel_calls("aten::lstm", 5, 0), Error);
}

}  // namespace
}  // namespace partita

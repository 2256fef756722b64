// Shape formulas (src/op_cost_compute.cpp), checked against hand-computed answers.
#include <gtest/gtest.h>

#include "partita/graph/op_cost.h"
#include "test_graphs.h"

namespace partita {
namespace {

using namespace partita::testing;

OpCost cost_of_last(const Graph& g) { return estimate_cost(g, g.num_nodes() - 1); }
ValueId flag(Graph& g, bool b) { return g.add_constant(ValueKind::kScalar, b ? "True" : "False"); }

TEST(OpCostCompute, Conv2dWithBias) {
  Graph g;  // 1x3x8x8 -> 4 channels, 3x3, pad 1: 2 * 256 * 27 + 256
  const ValueId x = input(g, {1, 3, 8, 8});
  const ValueId w = parameter(g, "conv.weight", {4, 3, 3, 3});
  const ValueId b = parameter(g, "conv.bias", {4});
  const ValueId ones = list_constant(g, "[1, 1]");
  op(g, "aten::conv2d", {x, w, b, ones, ones, ones, int_constant(g, "1")}, {1, 4, 8, 8});
  const OpCost c = cost_of_last(g);
  EXPECT_EQ(c.status, CostStatus::kEstimated);
  EXPECT_EQ(c.flops, Flops(2 * 256 * 27 + 256));
  EXPECT_EQ(c.bytes_read, Bytes(4 * (192 + 108 + 4)));
  EXPECT_EQ(c.bytes_written, Bytes(4 * 256));
}

TEST(OpCostCompute, UnderscoreConvolutionGroupedAndTransposed) {
  Graph g;
  const ValueId x = input(g, {1, 4, 8, 8});
  const ValueId dw = parameter(g, "dw.weight", {4, 1, 3, 3});
  const ValueId ones = list_constant(g, "[1, 1]");
  const ValueId zeros = list_constant(g, "[0, 0]");
  auto conv_args = [&](ValueId in, ValueId w, bool transposed, const char* groups) {
    return std::vector<ValueId>{in,
                                w,
                                none(g),
                                ones,
                                ones,
                                ones,
                                flag(g, transposed),
                                zeros,
                                int_constant(g, groups),
                                flag(g, false),
                                flag(g, false),
                                flag(g, true),
                                flag(g, true)};
  };
  // Depthwise 3x3, no bias: 2 * 256 * 9.
  op(g, "aten::_convolution", conv_args(x, dw, false, "4"), {1, 4, 8, 8});
  EXPECT_EQ(cost_of_last(g).flops, Flops(4608));
  // Transposed 2x2 stride 2, 4 -> 2 channels on 4x4: each of 64 inputs feeds 2*2*2 outputs: 2 * 512.
  const ValueId small = input(g, {1, 4, 4, 4}, "small");
  const ValueId up = parameter(g, "up.weight", {4, 2, 2, 2});
  op(g, "aten::_convolution", conv_args(small, up, true, "1"), {1, 2, 8, 8});
  EXPECT_EQ(cost_of_last(g).flops, Flops(1024));
  // Non-constant `transposed` flag: no estimate.
  std::vector<ValueId> args = conv_args(x, dw, false, "4");
  args[6] = g.add_input("dynamic_flag", ValueKind::kScalar);
  op(g, "aten::_convolution", args, {1, 4, 8, 8});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kNoEstimate);
}

TEST(OpCostCompute, LinearAddmmAndMatmul) {
  Graph g;
  const ValueId x = input(g, {8, 256});
  const ValueId w = parameter(g, "fc.weight", {512, 256});
  const ValueId b = parameter(g, "fc.bias", {512});
  op(g, "aten::linear", {x, w, b}, {8, 512});
  EXPECT_EQ(cost_of_last(g).flops, Flops(2.0 * 4096 * 256 + 4096));
  op(g, "aten::linear", {x, w, none(g)}, {8, 512});
  EXPECT_EQ(cost_of_last(g).flops, Flops(2.0 * 4096 * 256));

  const ValueId bias = parameter(g, "b", {16});
  const ValueId m1 = input(g, {4, 8}, "m1");
  const ValueId m2 = input(g, {8, 16}, "m2");
  op(g, "aten::addmm", {bias, m1, m2, int_constant(g, "1"), int_constant(g, "1")}, {4, 16});
  EXPECT_EQ(cost_of_last(g).flops, Flops(2 * 64 * 8 + 64));
  op(g, "aten::mm", {m1, m2}, {4, 16});
  EXPECT_EQ(cost_of_last(g).flops, Flops(2 * 64 * 8));

  const ValueId a3 = input(g, {2, 4, 8}, "a3");
  op(g, "aten::matmul", {a3, m2}, {2, 4, 16});  // 2 * 128 * 8
  EXPECT_EQ(cost_of_last(g).flops, Flops(2048));
  const ValueId v = input(g, {8}, "v");
  op(g, "aten::matmul", {v, m2}, {16});  // vector @ matrix
  EXPECT_EQ(cost_of_last(g).flops, Flops(256));
  op(g, "aten::matmul", {m1, v}, {4});  // matrix @ vector
  EXPECT_EQ(cost_of_last(g).flops, Flops(64));
  op(g, "aten::matmul", {v, v}, {});  // dot product
  EXPECT_EQ(cost_of_last(g).flops, Flops(16));
}

TEST(OpCostCompute, BatchedMatmulsAndAttention) {
  Graph g;
  const ValueId a = input(g, {2, 3, 4}, "a");
  const ValueId b = input(g, {2, 4, 5}, "b");
  op(g, "aten::bmm", {a, b}, {2, 3, 5});
  EXPECT_EQ(cost_of_last(g).flops, Flops(240));
  const ValueId c = input(g, {2, 3, 5}, "c");
  op(g, "aten::baddbmm", {c, a, b, int_constant(g, "1"), int_constant(g, "1")}, {2, 3, 5});
  EXPECT_EQ(cost_of_last(g).flops, Flops(270));

  const ValueId list = g.add_value(ValueKind::kList, "");
  g.add_node("prim::ListConstruct", {a, b}, {list});
  op(g, "aten::einsum", {g.add_constant(ValueKind::kOther, "'bij,bjk->bik'"), list, none(g)}, {2, 3, 5});
  EXPECT_EQ(cost_of_last(g).flops, Flops(240));
  op(g, "aten::einsum", {g.add_constant(ValueKind::kOther, "'...ij,...jk'"), list, none(g)}, {2, 3, 5});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kNoEstimate);

  const ValueId q = input(g, {2, 4, 16, 8}, "q");
  const ValueId k = input(g, {2, 4, 32, 8}, "k");
  op(g, "aten::scaled_dot_product_attention", {q, k, k, none(g), int_constant(g, "0"), flag(g, false)},
     {2, 4, 16, 8});
  EXPECT_EQ(cost_of_last(g).flops, Flops(4.0 * 2 * 4 * 16 * 32 * 8));
}

// torch.nn's fused inference kernels count what the unfused ops would (each term below is one of those ops).
TEST(OpCostCompute, FusedTransformerKernelsCountTheOpsTheyReplace) {
  Graph g;
  // Encoder layer: batch 2, 3 tokens, width 4, 2 heads (head width 2), feed-forward 8.
  const ValueId src = input(g, {2, 3, 4}, "src");
  const auto w = [&](std::vector<int64_t> shape) { return input(g, std::move(shape), "w"); };
  op(g, "aten::_transformer_encoder_layer_fwd",
     {src,
      int_constant(g, "4"),
      int_constant(g, "2"),
      w({12, 4}),
      w({12}),
      w({4, 4}),
      w({4}),
      flag(g, false),
      flag(g, false),
      g.add_constant(ValueKind::kScalar, "1e-05"),
      w({4}),
      w({4}),
      w({4}),
      w({4}),
      w({8, 4}),
      w({8}),
      w({4, 8}),
      w({4}),
      none(g),
      none(g)},
     {2, 3, 4});
  const double in_proj = 2 * 6 * 4 * 12 + 6 * 12, scale_q = 24, scores = 2 * 4 * 3 * 3 * 2,
               softmax = 5 * 4 * 3 * 3, weighted = scores, out_proj = 2 * 6 * 4 * 4 + 24,
               add_norm = 24 + 8 * 24, ffn1 = 2 * 6 * 4 * 8 + 48, relu = 48, ffn2 = 2 * 6 * 8 * 4 + 24;
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kEstimated);
  EXPECT_EQ(cost_of_last(g).flops, Flops(in_proj + scale_q + scores + softmax + weighted + out_proj +
                                         add_norm + ffn1 + relu + ffn2 + add_norm));

  // Attention of 3 queries on 5 keys (cross-attention), width 4, 2 heads; outputs (attended, weights).
  const ValueId query = input(g, {2, 3, 4}, "q");
  const ValueId key = input(g, {2, 5, 4}, "k");
  const ValueId out = tensor(g, {2, 3, 4});
  const ValueId weights = g.add_value(ValueKind::kNone, "");
  g.add_node("aten::_native_multi_head_attention",
             {query, key, key, int_constant(g, "4"), int_constant(g, "2"), w({12, 4}), w({12}), w({4, 4}),
              w({4}), none(g), flag(g, false), flag(g, true), none(g)},
             {out, weights});
  const double q_proj = 2 * 6 * 4 * 4 + 24, kv_proj = 2 * (2 * 10 * 4 * 4 + 40),
               cross_scores = 2 * 4 * 3 * 5 * 2, cross_softmax = 5 * 4 * 3 * 5;
  EXPECT_EQ(cost_of_last(g).flops,
            Flops(q_proj + kv_proj + scale_q + cross_scores + cross_softmax + cross_scores + out_proj));

  // Without a constant head count there is no estimate.
  op(g, "aten::_native_multi_head_attention",
     {query, key, key, int_constant(g, "4"), input(g, {}, "heads"), w({12, 4}), w({12}), w({4, 4}), w({4}),
      none(g), flag(g, false), flag(g, true), none(g)},
     {2, 3, 4});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kNoEstimate);
}

// Recurrent layers count the cells they run, unrolled: per token (batch x steps) and layer, the two linears
// (2 per multiply-add, 1 per bias element), the add of their gate pre-activations and the cell's element-wise
// ops (sigmoid and tanh 4 each, add and mul 1).
TEST(OpCostCompute, RecurrentLayersCountTheirCellsUnrolled) {
  Graph g;
  // nn.LSTM(3, 5, num_layers=2), input [7 steps, batch 2, 3 features]: gates 4 x 5 = 20.
  const ValueId x = input(g, {7, 2, 3}, "x");
  const auto list = [&](std::vector<std::vector<int64_t>> shapes) {
    std::vector<ValueId> items;
    for (auto& shape : shapes) items.push_back(parameter(g, "p", std::move(shape)));
    const ValueId l = g.add_value(ValueKind::kList, "");
    g.add_node("prim::ListConstruct", items, {l});
    return l;
  };
  const ValueId h0 = tensor(g, {2, 2, 5});
  const ValueId hx = g.add_value(ValueKind::kList, "");
  g.add_node("prim::ListConstruct", {h0, h0}, {hx});
  const ValueId params = list({{20, 3}, {20, 5}, {20}, {20}, {20, 5}, {20, 5}, {20}, {20}});
  const ValueId dropout = g.add_constant(ValueKind::kScalar, "0.");
  op(g, "aten::lstm",
     {x, hx, params, flag(g, true), int_constant(g, "2"), dropout, flag(g, false), flag(g, false),
      flag(g, false)},
     {7, 2, 5});
  const double tokens = 14;
  const double layer0 = 2 * 20 * 3 + 2 * 20 * 5 + 20 + 20, layer1 = 2 * 20 * 5 + 2 * 20 * 5 + 20 + 20;
  const double gate_adds = 20, cell = 3 * 4 * 5 + 2 * 4 * 5 + 4 * 5;  // sigmoids, tanhs, f*c + i*g, o*tanh(c)
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kEstimated);
  EXPECT_EQ(cost_of_last(g).flops, Flops(tokens * (layer0 + layer1 + 2 * (gate_adds + cell))));
  // LibTorch runs an LSTM cell as 11 calls per step, plus the input projection and the output stack per
  // layer: 2 layers x (7 steps x 11 + 2).
  EXPECT_EQ(cost_of_last(g).kernel_calls, 2 * (7 * 11 + 2));
  const auto last_layout = [&] { return recurrent_layout(g, g.node(g.num_nodes() - 1)); };
  ASSERT_TRUE(last_layout());
  EXPECT_EQ(last_layout()->steps, 7);
  EXPECT_EQ(last_layout()->tokens, 14);
  EXPECT_EQ(last_layout()->gates, 4);
  EXPECT_EQ(last_layout()->hidden, 5);
  EXPECT_EQ(last_layout()->layer_directions(), 2);
  EXPECT_FALSE(last_layout()->projections);
  EXPECT_EQ(last_layout()->weights.size(), 8u);

  // Packed (lstm.data): data [tokens, features], the params one position later; bidirectional, 1 layer.
  const ValueId packed = input(g, {9, 3}, "data");
  const ValueId both = list({{20, 3}, {20, 5}, {20}, {20}, {20, 3}, {20, 5}, {20}, {20}});
  op(g, "aten::lstm",
     {packed, input(g, {4}, "batch_sizes"), hx, both, flag(g, true), int_constant(g, "1"), dropout,
      flag(g, false), flag(g, true)},
     {9, 10});
  EXPECT_EQ(cost_of_last(g).flops, Flops(9 * 2 * (layer0 + gate_adds + cell)));
  EXPECT_EQ(cost_of_last(g).kernel_calls, 2 * (4 * 11 + 2));  // 4 steps (batch_sizes' length), 2 directions
  ASSERT_TRUE(last_layout());
  EXPECT_EQ(last_layout()->steps, 4);
  EXPECT_EQ(last_layout()->tokens, 9);
  EXPECT_EQ(last_layout()->layers, 1);
  EXPECT_EQ(last_layout()->directions, 2);

  // nn.GRU(3, 5) without biases: gates 3 x 5 = 15; r, z (2 sigmoids), n (tanh of i_n + r*h_n),
  // h = (1-z)*n + z*h.
  op(g, "aten::gru",
     {x, h0, list({{15, 3}, {15, 5}}), flag(g, false), int_constant(g, "1"), dropout, flag(g, false),
      flag(g, false), flag(g, false)},
     {7, 2, 5});
  EXPECT_EQ(cost_of_last(g).flops, Flops(tokens * (2 * 15 * 3 + 2 * 15 * 5 + 15 + (2 * 4 + 4 + 1 + 4) * 5)));
  EXPECT_EQ(cost_of_last(g).kernel_calls, 7 * 12 + 2);
  EXPECT_EQ(last_layout()->gates, 3);
  // batch_first: the steps are the input's second dim ([batch 2, 7 steps, 3]), not its first.
  op(g, "aten::gru",
     {input(g, {2, 7, 3}, "x_batch_first"), h0, list({{15, 3}, {15, 5}}), flag(g, false),
      int_constant(g, "1"), dropout, flag(g, false), flag(g, false), flag(g, true)},
     {2, 7, 5});
  EXPECT_EQ(cost_of_last(g).kernel_calls, 7 * 12 + 2);

  // nn.RNN(3, 5, nonlinearity="relu"): one gate; the activation costs 1.
  op(g, "aten::rnn_relu",
     {x, h0, list({{5, 3}, {5, 5}, {5}, {5}}), flag(g, true), int_constant(g, "1"), dropout, flag(g, false),
      flag(g, false), flag(g, false)},
     {7, 2, 5});
  EXPECT_EQ(cost_of_last(g).flops, Flops(tokens * (2 * 5 * 3 + 2 * 5 * 5 + 5 + 5 + 5 + 5)));
  EXPECT_EQ(cost_of_last(g).kernel_calls, 7 * 3 + 2);

  // nn.LSTM(3, 5, proj_size=2): the recurrent weight reads the projected state (20 x 2), and W_hr (2 x 5)
  // projects o * tanh(c) each step.
  op(g, "aten::lstm",
     {x, hx, list({{20, 3}, {20, 2}, {20}, {20}, {2, 5}}), flag(g, true), int_constant(g, "1"), dropout,
      flag(g, false), flag(g, false), flag(g, false)},
     {7, 2, 2});
  EXPECT_EQ(cost_of_last(g).flops,
            Flops(tokens * (2 * 20 * 3 + 2 * 20 * 2 + 20 + 20 + 2 * 2 * 5 + gate_adds + cell)));

  // A weight list that holds neither two matrices per layer and direction nor three (projections) and a
  // layer count that is not a constant get no estimate.
  op(g, "aten::lstm",
     {x, hx, list({{20, 3}, {20, 2}, {20}, {20}, {2, 5}, {2, 5}}), flag(g, true), int_constant(g, "1"),
      dropout, flag(g, false), flag(g, false), flag(g, false)},
     {7, 2, 2});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kNoEstimate);
  op(g, "aten::gru",
     {x, h0, list({{15, 3}, {15, 2}, {2, 5}}), flag(g, false), int_constant(g, "1"), dropout, flag(g, false),
      flag(g, false), flag(g, false)},
     {7, 2, 2});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kNoEstimate);
  op(g, "aten::lstm",
     {x, hx, params, flag(g, true), input(g, {}, "layers"), dropout, flag(g, false), flag(g, false),
      flag(g, false)},
     {7, 2, 5});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kNoEstimate);
}

TEST(OpCostCompute, Pooling) {
  Graph g;
  const ValueId x = input(g, {1, 4, 8, 8});
  const ValueId two = int_constant(g, "2");
  const ValueId kernel = g.add_value(ValueKind::kList, "");
  g.add_node("prim::ListConstruct", {two, two}, {kernel});  // as traced: a list of constants
  const ValueId zeros = list_constant(g, "[0, 0]");
  op(g, "aten::max_pool2d", {x, kernel, kernel, zeros, list_constant(g, "[1, 1]"), flag(g, false)},
     {1, 4, 4, 4});
  EXPECT_EQ(cost_of_last(g).flops, Flops(64 * 4));
  op(g, "aten::avg_pool2d", {x, int_constant(g, "3"), two, zeros, flag(g, false), flag(g, true), none(g)},
     {1, 4, 3, 3});
  EXPECT_EQ(cost_of_last(g).flops, Flops(36 * 9));
  op(g, "aten::adaptive_avg_pool2d", {x, list_constant(g, "[1, 1]")}, {1, 4, 1, 1});
  EXPECT_EQ(cost_of_last(g).flops, Flops(256));
}

TEST(OpCostCompute, NormalizationSoftmaxEmbedding) {
  Graph g;
  const ValueId x = input(g, {1, 4, 8, 8});
  const ValueId w = parameter(g, "bn.weight", {4});
  auto bn = [&](bool training) {
    return std::vector<ValueId>{
        x, w, w, w, w, flag(g, training), int_constant(g, "0"), int_constant(g, "0"), flag(g, true)};
  };
  op(g, "aten::batch_norm", bn(false), {1, 4, 8, 8});
  EXPECT_EQ(cost_of_last(g).flops, Flops(4 * 256));
  op(g, "aten::batch_norm", bn(true), {1, 4, 8, 8});
  EXPECT_EQ(cost_of_last(g).flops, Flops(8 * 256));
  const ValueId h = input(g, {2, 16}, "h");
  op(g, "aten::layer_norm", {h, list_constant(g, "[16]"), none(g), none(g)}, {2, 16});
  EXPECT_EQ(cost_of_last(g).flops, Flops(8 * 32));
  op(g, "aten::softmax", {h, int_constant(g, "-1"), none(g)}, {2, 16});
  EXPECT_EQ(cost_of_last(g).flops, Flops(5 * 32));

  const ValueId table = parameter(g, "wte.weight", {100, 16});
  const ValueId idx = g.add_input("ids");
  g.value(idx).tensors.push_back(TensorMeta{{2, 5}, DType::kInt64});
  op(g, "aten::embedding", {table, idx, int_constant(g, "-1"), flag(g, false), flag(g, false)}, {2, 5, 16});
  const OpCost e = cost_of_last(g);
  EXPECT_EQ(e.status, CostStatus::kEstimated);
  EXPECT_EQ(e.flops, Flops(0));
  EXPECT_EQ(e.bytes_read, Bytes(80 + 640));  // indices + gathered rows, not the 6400-byte table
  EXPECT_EQ(e.bytes_written, Bytes(640));
}

// Ops of real models that had no estimate ("their cost is unknown, not zero"): torchvision's RAFT
// (grid_sampler), EmbeddingBag recommenders, metric-learning heads (cdist, cosine_similarity), nn.Bilinear,
// weight-normalized convolutions, nn.Fold.
TEST(OpCostCompute, GatherInterpolateAndDistanceOps) {
  Graph g;
  const ValueId table = parameter(g, "bag.weight", {100, 16});
  const ValueId idx = g.add_input("ids");
  g.value(idx).tensors.push_back(TensorMeta{{10}, DType::kInt64});
  const ValueId offsets = g.add_input("offsets");
  g.value(offsets).tensors.push_back(TensorMeta{{3}, DType::kInt64});
  auto bag = [&](ValueId per_sample) {
    return std::vector<ValueId>{
        table,          idx,        offsets,        flag(g, false), int_constant(g, "0"),
        flag(g, false), per_sample, flag(g, false), none(g)};
  };
  op(g, "aten::embedding_bag", bag(none(g)), {3, 16});
  OpCost c = cost_of_last(g);
  EXPECT_EQ(c.status, CostStatus::kEstimated);
  EXPECT_EQ(c.flops, Flops(10 * 16));                     // one add per gathered element
  EXPECT_EQ(c.bytes_read, Bytes(80 + 24 + 10 * 16 * 4));  // indices, offsets, the 10 rows gathered
  EXPECT_EQ(c.bytes_written, Bytes(3 * 16 * 4));
  op(g, "aten::embedding_bag", bag(input(g, {10}, "weights")), {3, 16});
  EXPECT_EQ(cost_of_last(g).flops, Flops(2 * 10 * 16));

  // 48 output elements from 4 neighbours (bilinear: 4 multiplies, 3 adds), 16 (bicubic), nearest a copy;
  // 3-D trilinear from 8.
  const ValueId img = input(g, {1, 3, 8, 8}, "img");
  const ValueId grid = input(g, {1, 4, 4, 2}, "grid");
  for (const auto& [mode, flops] :
       std::vector<std::pair<const char*, double>>{{"0", 48 * 7}, {"1", 0}, {"2", 48 * 31}}) {
    op(g, "aten::grid_sampler", {img, grid, int_constant(g, mode), int_constant(g, "0"), flag(g, false)},
       {1, 3, 4, 4});
    EXPECT_EQ(cost_of_last(g).flops, Flops(flops)) << "mode " << mode;
  }
  const ValueId vol = input(g, {1, 2, 4, 4, 4}, "vol");
  const ValueId grid3 = input(g, {1, 2, 2, 2, 3}, "grid3");
  op(g, "aten::grid_sampler", {vol, grid3, int_constant(g, "0"), int_constant(g, "0"), flag(g, false)},
     {1, 2, 2, 2, 2});
  EXPECT_EQ(cost_of_last(g).flops, Flops(16 * 15));

  // cdist of 5 against 6 points in 8 dims, batch 2: 60 distances of 8 differences, squares and adds + a root.
  op(g, "aten::cdist", {input(g, {2, 5, 8}, "p"), input(g, {2, 6, 8}, "q"), none(g), none(g)}, {2, 5, 6});
  EXPECT_EQ(cost_of_last(g).flops, Flops(60 * (3 * 8 + 1)));
  // cosine_similarity over 16 features of 4 rows: 3 dot products of 64 elements.
  const ValueId a = input(g, {4, 16}, "a");
  op(g, "aten::cosine_similarity", {a, a, int_constant(g, "1"), none(g)}, {4});
  EXPECT_EQ(cost_of_last(g).flops, Flops(3 * 2 * 64));
  // nn.Bilinear(3, 5, 2) on 4 rows: 8 outputs of 3*5 + 5 multiply-adds and a bias add.
  op(g, "aten::bilinear",
     {input(g, {4, 3}, "x1"), input(g, {4, 5}, "x2"), parameter(g, "bl.weight", {2, 3, 5}),
      parameter(g, "bl.bias", {2})},
     {4, 2});
  EXPECT_EQ(cost_of_last(g).flops, Flops(8 * (2 * (15 + 5) + 1)));
  // weight_norm of v [8, 4]: norm (2), divide and scale per element.
  op(g, "aten::_weight_norm", {parameter(g, "v", {8, 4}), parameter(g, "g", {8, 1}), int_constant(g, "0")},
     {8, 4});
  EXPECT_EQ(cost_of_last(g).flops, Flops(4 * 32));
  // col2im sums 12 x 9 patch elements into the image.
  const ValueId pairs = list_constant(g, "[2, 2]");
  op(g, "aten::col2im",
     {input(g, {1, 12, 9}, "cols"), list_constant(g, "[4, 4]"), pairs, pairs, pairs, pairs}, {1, 3, 4, 4});
  EXPECT_EQ(cost_of_last(g).flops, Flops(108));
}

TEST(OpCostCompute, LinearAlgebraFftsAndSorts) {
  Graph g;
  // LU: 2/3 n^3 per matrix (two 3x3), the solve's substitutions 2 n^2 per right-hand column, inverse 2 n^3.
  op(g, "aten::linalg_det", {input(g, {2, 3, 3}, "A")}, {2});
  EXPECT_DOUBLE_EQ(cost_of_last(g).flops.value(), 2 * 18.0);
  op(g, "aten::linalg_solve", {input(g, {3, 3}, "S"), input(g, {3, 2}, "B"), flag(g, true)}, {3, 2});
  EXPECT_DOUBLE_EQ(cost_of_last(g).flops.value(), 18.0 + 2 * 3 * 6);
  op(g, "aten::inverse", {input(g, {4, 4}, "M")}, {4, 4});
  EXPECT_EQ(cost_of_last(g).flops, Flops(2 * 64));

  // Two transforms of length 8: 5 N log2 N complex, half for real ones (irfft: N is the output's length).
  const ValueId signal = input(g, {2, 8}, "signal");
  op(g, "aten::fft_fft", {signal, none(g), int_constant(g, "-1"), none(g)}, {2, 8});
  EXPECT_EQ(cost_of_last(g).flops, Flops(16 * 5 * 3));
  op(g, "aten::fft_rfft", {signal, none(g), int_constant(g, "-1"), none(g)}, {2, 5});
  EXPECT_EQ(cost_of_last(g).flops, Flops(16 * 2.5 * 3));
  op(g, "aten::fft_irfft", {input(g, {2, 5}, "spectrum"), none(g), int_constant(g, "1"), none(g)}, {2, 8});
  EXPECT_EQ(cost_of_last(g).flops, Flops(16 * 2.5 * 3));

  // 4 rows of 8: N log2 N comparisons along dim -1, along dim 0 (4 long) in the stable overload; topk(4) a
  // heap of 4 per element.
  const ValueId x = input(g, {4, 8}, "scores");
  op(g, "aten::sort", {x, int_constant(g, "-1"), flag(g, false)}, {4, 8});
  EXPECT_EQ(cost_of_last(g).flops, Flops(32 * 3));
  op(g, "aten::sort", {x, flag(g, true), int_constant(g, "0"), flag(g, false)}, {4, 8});
  EXPECT_EQ(cost_of_last(g).flops, Flops(32 * 2));
  op(g, "aten::topk", {x, int_constant(g, "4"), int_constant(g, "-1"), flag(g, true), flag(g, true)}, {4, 4});
  EXPECT_EQ(cost_of_last(g).flops, Flops(32 * 2));
  // A dim or k only known at run time: no estimate.
  op(g, "aten::topk",
     {x, g.add_input("k", ValueKind::kScalar), int_constant(g, "-1"), flag(g, true), flag(g, true)}, {4, 4});
  EXPECT_EQ(cost_of_last(g).status, CostStatus::kNoEstimate);
}

}  // namespace
}  // namespace partita

#include "partita/search/tensor_strategy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "partita/cost/comm.h"
#include "partita/search/blocks.h"
#include "partita/search/chain_plan.h"
#include "partita/search/hybrid_strategy.h"
#include "partita/search/planner.h"
#include "partita/search/simulator.h"
#include "partita/search/tensor_model.h"
#include "test_support.h"

namespace partita {
namespace {

using testing::make_cluster;
using testing::make_link;
using testing::make_spec;
using testing::mlp_pair_graph;
using testing::table_for;
using There = TensorModel::GradientsAtStart;

// What a step of `microbatches` (StageLoad's: 0 not known) has at its device's first backward.
There there(int microbatches) { return microbatches == 1 ? There::kNone : There::kAll; }

SearchOptions tensor_options(Mode mode) {
  SearchOptions o;
  o.mode = mode;
  o.global_batch = 1;
  o.strategy = StrategyKind::kTensor;
  return o;
}

TEST(TensorModel, SplitsColumnThenRowAndAllReducesOnce) {
  const Graph g = mlp_pair_graph(250'000);
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
  EXPECT_EQ(tm.model_state(0, 2, 2).value() * 2, model.parameter_bytes(0, 2).value());
}

// ids [1, 8] -> embedding (a 1000 x 16 table, vocabulary-parallel) + embedding (an 8 x 16 table, replicated)
// -> linear pair.
TEST(TensorModel, SplitsABigEmbeddingTableByRowsAndAllReducesItsOutput) {
  Graph g;
  const ValueId ids = g.add_input("ids");
  g.value(ids).tensors = {TensorMeta{{1, 8}, DType::kInt64}};
  auto param = [&](const char* name, std::vector<int64_t> shape) {
    const ValueId w = g.add_parameter(name, true);
    g.value(w).tensors = {TensorMeta{std::move(shape), DType::kFloat32}};
    return w;
  };
  auto op = [&](const char* name, std::vector<ValueId> in, std::vector<int64_t> shape) {
    const ValueId y = g.add_value(ValueKind::kTensor, name);
    g.value(y).tensors = {TensorMeta{std::move(shape), DType::kFloat32}};
    const NodeId n = g.add_node(name, std::move(in), {y});
    g.node(n).cost = OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
    return y;
  };
  const ValueId tok = op("aten::embedding", {param("wte", {1000, 16}), ids}, {1, 8, 16});
  const ValueId pos = op("aten::embedding", {param("wpe", {8, 16}), ids}, {1, 8, 16});
  const ValueId x = op("aten::add", {tok, pos}, {1, 8, 16});
  const ValueId h = op("aten::linear", {x, param("w1", {64, 16})}, {1, 8, 64});
  g.set_outputs({op("aten::linear", {h, param("w2", {16, 64})}, {1, 8, 16})});
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, tensor_options(Mode::kInference));
  const TensorModel tm(model);
  EXPECT_TRUE(tm.split(0) && tm.all_reduce_after(0));  // the token table: split, output all-reduced
  EXPECT_FALSE(tm.split(1) || tm.split(2));            // the position table and the add: replicated
  EXPECT_TRUE(tm.split(3) && tm.split(4) && tm.all_reduce_after(4) && !tm.all_reduce_after(3));
  // Per device on 2: half of wte, w1 and w2, all of wpe.
  const int64_t half = (1000 * 16 + 64 * 16 + 16 * 64) * 4 / 2, whole = 8 * 16 * 4;
  EXPECT_EQ(tm.model_state(0, 4, 2).value(), half + whole);
  // Two all-reduces of 512-byte outputs per pass: 2 x 2 (p-1)/p x 512 B at 1 GB/s.
  EXPECT_NEAR(tm.communication(0, 4, 1, 2, make_link(1)).value(), 2 * 512e-9, 1e-15);
}

// Inference: a device holds the split results 1/p each, a closing row-split matmul's output twice (its
// partial sum and the all-reduced sum) and, for a pair left open at the end, its part and the gathered whole.
TEST(TensorModel, InferencePeakHoldsSplitPartsAndWholeSums) {
  {
    const Graph g =
        mlp_pair_graph(2048);  // x 64 B -> y0 4 KiB (split) -> y1 4 KiB (split) -> out 8 KiB (row)
    const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
    const CostTable t = table_for(g, c);
    const StageModel model(g, c, t, tensor_options(Mode::kInference));
    const TensorModel tm(model);
    // Node 2 holds y1's part, the partial sum and the sum: 4096 / p + 2 x 8192.
    EXPECT_DOUBLE_EQ(tm.peak_alive(0, 2, 1, 2), 2048 + 16384);
    EXPECT_DOUBLE_EQ(tm.peak_alive(0, 1, 1, 2), 4096);  // relu: y0 and y1 halves
    EXPECT_DOUBLE_EQ(tm.peak_alive(0, 1, 1, 4), 2048);
    EXPECT_EQ(tm.memory(0, 2, 3, 2, 1).value(), tm.model_state(0, 2, 2).value() + 3 * (2048 + 16384));
  }
  // x -> column-split linear -> relu, the graph's output: the pair is open at the end and gathered.
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 16}, DType::kFloat32}};
  const ValueId w = g.add_parameter("w", true);
  g.value(w).tensors = {TensorMeta{{1024, 16}, DType::kFloat32}};
  const ValueId y = g.add_value(ValueKind::kTensor, "y"), z = g.add_value(ValueKind::kTensor, "z");
  g.value(y).tensors = g.value(z).tensors = {TensorMeta{{1, 1024}, DType::kFloat32}};
  g.node(g.add_node("aten::linear", {x, w}, {y})).cost =
      OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.node(g.add_node("aten::relu", {y}, {z})).cost =
      OpCost{Flops(0), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.set_outputs({z});
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, tensor_options(Mode::kInference));
  const TensorModel tm(model);
  ASSERT_TRUE(tm.all_reduce_after(1));
  // After relu: its part of z and the gathered z (4096 / p + 4096); while it runs, the parts of y and z.
  EXPECT_DOUBLE_EQ(tm.peak_alive(0, 1, 1, 2), 2048 + 4096);
  EXPECT_DOUBLE_EQ(tm.peak_alive(0, 1, 1, 4), 1024 + 4096);
  EXPECT_DOUBLE_EQ(tm.peak_alive(0, 1, 1, 3), 4096.0 / 3 + 4096);  // no table for 3: scanned
  EXPECT_DOUBLE_EQ(tm.peak_alive(0, 0, 1, 2), 64 + 2048);          // x and y's part
}

// Training: a device's backward peak holds the split storages 1/p each (y0 and y1, outputs of the pair's
// first node and of the node inside it) and the row-split node's output whole; with one microbatch per step
// the gradients not made yet are left out, a split weight's 1/p; with several, a later backward makes its
// part of a split weight's gradient afresh (to be added into the one there), 1/p.
TEST(TensorModel, TrainingPeakHoldsSplitStoragesInPartAndTimesTheGradients) {
  // x 64 B -> n0 linear (w0, 64 KiB, column) -> y0 4 KiB -> n1 relu -> y1 4 KiB (saved) -> n2 linear (w2,
  // 64 KiB, row) -> out 1 MB.
  const Graph g = mlp_pair_graph(250'000);
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, tensor_options(Mode::kTraining));
  const TensorModel tm(model);
  ASSERT_DOUBLE_EQ(model.saved(0, 2).per_sample, 4096);  // relu's output (the second linear reads it too)
  // At n2 on 2 devices: y1's half and the whole 1 MB output, less nothing saved later; with one microbatch
  // less w0's half gradient (32 KiB), not made until backward reaches n0.
  const double at_n2 = 2048 + 1e6;
  const auto one = tm.backward_peak(0, 2, 1, 2, There::kNone);
  EXPECT_DOUBLE_EQ(one.beyond_state, at_n2 - 32768);
  EXPECT_EQ(one.unmade_gradients, Bytes(32768));
  EXPECT_EQ(one.unmade_replicated, Bytes(0));
  const auto many = tm.backward_peak(0, 2, 1, 2, There::kAll);
  EXPECT_DOUBLE_EQ(many.beyond_state, at_n2 + 32768);  // and w2's half gradient, made afresh
  EXPECT_EQ(many.unmade_gradients, Bytes(0));
  // Three devices have no table: the nodes are scanned, to the same rule.
  EXPECT_DOUBLE_EQ(tm.backward_peak(0, 2, 1, 3, There::kNone).beyond_state, 4096.0 / 3 + 1e6 - 65536.0 / 3);
  // Without the output node, on 2 samples: at n1 (y0's and y1's halves) w0's gradient is not made yet, so
  // the peak is at n0 (y0's half, less y1's half, which the backward freed by then; x, a user input, gets no
  // gradient): nothing beyond the activations. In a later backward n0 makes w0's half gradient afresh there
  // (more than n1's y0 and y1 halves). Beside it, the gradient of y1, which the range sends on, comes back
  // whole (values cross cuts whole; 4096 bytes a sample), and at n1 it is counted in half already.
  EXPECT_DOUBLE_EQ(tm.backward_peak(0, 1, 2, 2, There::kNone).beyond_state, 2 * 2048 - 2 * 2048 + 2 * 4096);
  EXPECT_DOUBLE_EQ(tm.backward_peak(0, 1, 2, 2, There::kAll).beyond_state,
                   2 * 2048 + 32768 - 2 * 2048 + 2 * 4096);
  // The relu alone: its backward holds y0's and y1's parts, and y1's whole gradient returned, of which its
  // part is one of those (2 devices: the table's lines; 3: the nodes scanned).
  EXPECT_DOUBLE_EQ(tm.backward_peak(1, 1, 2, 2, There::kNone).beyond_state, 2 * (2048 + 2048) + 2 * 2048);
  EXPECT_DOUBLE_EQ(tm.backward_peak(1, 1, 2, 3, There::kNone).beyond_state,
                   2 * (4096.0 / 3 + 4096.0 / 3) + 2 * 4096 * (1 - 1.0 / 3));
  // memory(): model state (half of each weight, its gradient and Adam's two moments) + the peak + the kept
  // activations (x, y1's half, the output and the loss's copy of it).
  const double state = 4 * 65536;
  const double act = tm.activation(0, 2, 2).per_sample;
  EXPECT_EQ(tm.memory(0, 2, 1, 2, 1, -1, 1).value(), static_cast<int64_t>(state + at_n2 - 32768 + act));
  EXPECT_EQ(tm.memory(0, 2, 1, 2, 1, -1, 0).value(), static_cast<int64_t>(state + at_n2 + 32768 + act));
}

// A pair left open at the end (a language model's head): x [1, 16] @ w [1024, 16], its 4 KiB output gathered.
Graph open_head_graph() {
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 16}, DType::kFloat32}};
  const ValueId w = g.add_parameter("w", true);
  g.value(w).tensors = {TensorMeta{{1024, 16}, DType::kFloat32}};
  const ValueId y = g.add_value(ValueKind::kTensor, "y");
  g.value(y).tensors = {TensorMeta{{1, 1024}, DType::kFloat32}};
  g.node(g.add_node("aten::linear", {x, w}, {y})).cost =
      OpCost{Flops(1e9), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.set_outputs({y});
  return g;
}

// Each device holds its part of a gathered output and the whole, whose gradient comes back whole; in a later
// backward also its half of w's gradient, made afresh.
TEST(TensorModel, TrainingPeakHoldsAGatheredOutputWhole) {
  const Graph g = open_head_graph();
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, tensor_options(Mode::kTraining));
  const TensorModel tm(model);
  ASSERT_TRUE(tm.all_reduce_after(0));
  // The gradients of y's half and of the gathered y (x, a user input, gets none), and w's half (32 KiB).
  EXPECT_DOUBLE_EQ(tm.backward_peak(0, 0, 1, 2, There::kAll).beyond_state, 2048 + 4096 + 32768);
  EXPECT_DOUBLE_EQ(tm.backward_peak(0, 0, 1, 2, There::kNone).beyond_state, 2048 + 4096);
}

// A device in a process of its own receives its peers' parts before adding or joining them: p - 1 copies
// of an all-reduced output, (p - 1) / p of a gathered one; training, whose peak is in backward, p - 1 copies
// of the gradient of a replicated value entering split nodes, the backward's one collective.
TEST(TensorModel, ReceivedPartsArePMinusOneCopiesOfASumAndTheRestOfAGather) {
  const Graph pair = mlp_pair_graph(250'000);  // its pair closes: one all-reduce of a 1 MB output
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const StageModel closed(pair, c, table_for(pair, c), tensor_options(Mode::kInference));
  const TensorModel tm(closed);
  EXPECT_EQ(tm.received_parts(0, 2, 1, 2), Bytes(1'000'000));
  EXPECT_EQ(tm.received_parts(0, 2, 1, 4), Bytes(3'000'000));
  EXPECT_EQ(tm.received_parts(0, 2, 2, 2), Bytes(2'000'000));  // two samples
  EXPECT_EQ(tm.received_parts(0, 1, 1, 2), Bytes(0));          // no collective in nodes 0-1
  const Graph head = open_head_graph();                        // gathers its 4 KiB output
  const StageModel open(head, c, table_for(head, c), tensor_options(Mode::kInference));
  const TensorModel gathers(open);
  ASSERT_TRUE(gathers.all_reduce_after(0));
  EXPECT_EQ(gathers.received_parts(0, 0, 1, 2), Bytes(2048));
  EXPECT_EQ(gathers.received_parts(0, 0, 1, 4), Bytes(3072));
  // Training: the pair's input is a user input (no gradient), so the backward exchanges nothing; after a
  // trained scale, the scale's 64-byte output enters the pair.
  const StageModel pair_training(pair, c, table_for(pair, c), tensor_options(Mode::kTraining));
  EXPECT_EQ(TensorModel(pair_training).received_parts(0, 2, 1, 2), Bytes(0));
  const Graph scaled = testing::scaled_pair_graph(1024);
  const StageModel scaled_training(scaled, c, table_for(scaled, c), tensor_options(Mode::kTraining));
  const TensorModel enters(scaled_training);
  EXPECT_EQ(enters.received_parts(0, 2, 1, 2), Bytes(64));
  EXPECT_EQ(enters.received_parts(0, 2, 3, 4), Bytes(3 * 3 * 64));
  EXPECT_EQ(enters.received_parts(0, 0, 1, 2), Bytes(0));  // the scale alone: no split node reads it
}

// A replicated weight's gradient is whole on every device: a scale read before the pair is not made yet
// when the backward starts at the pair's big output.
TEST(TensorModel, TrainingPeakLeavesOutAReplicatedGradientWhole) {
  const Graph g = testing::scaled_pair_graph(250'000);
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, tensor_options(Mode::kTraining));
  const TensorModel tm(model);
  ASSERT_FALSE(tm.split(0));
  ASSERT_TRUE(tm.split(1) && tm.split(2));
  EXPECT_EQ(tm.replicated_trainable_bytes(0, 2), Bytes(64));
  const auto peak = tm.backward_peak(0, 2, 1, 2, There::kNone);
  EXPECT_EQ(peak.unmade_gradients, Bytes(64 + 65536 / 2));
  EXPECT_EQ(peak.unmade_replicated, Bytes(64));
}

// What does not depend on the batch (a softmax of a weight, read by the last linear) is held once per run,
// not per sample: alive (inference), in the backward's working set and saved bytes (training), in the
// all-reduced bytes. With one device per group the figures are StageModel's.
TEST(TensorModel, AStorageWithoutTheBatchIsHeldWholeByEveryRun) {
  using testing::f32;
  Graph g;
  const ValueId x = f32(g, g.add_input("x"), {4, 16});               // 64 bytes per sample
  const ValueId p = f32(g, g.add_parameter("P", true), {1024, 16});  // 64 KiB
  const ValueId w1 = f32(g, g.add_parameter("W1", true), {64, 16});
  const ValueId w2 = f32(g, g.add_parameter("W2", true), {16, 64});
  const ValueId m = f32(g, g.add_value(ValueKind::kTensor, "m"), {1024, 16});  // 64 KiB whole
  const ValueId y = f32(g, g.add_value(ValueKind::kTensor, "y"), {4, 64});     // 256 per sample, split
  const ValueId r = f32(g, g.add_value(ValueKind::kTensor, "r"), {4, 64});     // 256 per sample, split
  const ValueId o = f32(g, g.add_value(ValueKind::kTensor, "o"), {4, 16});     // 64 per sample, all-reduced
  const ValueId z = f32(g, g.add_value(ValueKind::kTensor, "z"), {4, 1024});   // 4096 per sample
  testing::add_costed_nodes(g,
                            {{"aten::softmax", {p}, {m}},
                             {"aten::linear", {x, w1}, {y}},
                             {"aten::relu", {y}, {r}},
                             {"aten::linear", {r, w2}, {o}},
                             {"aten::linear", {o, m}, {z}}},
                            {z});
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);

  const StageModel infer(g, c, t, tensor_options(Mode::kInference));
  const TensorModel ti(infer);
  ASSERT_TRUE(!ti.split(0) && ti.split(1) && ti.split(2) && ti.split(3) && !ti.split(4));
  // At the last linear: o and z per sample, m whole (it was counted as 16 KiB per sample).
  for (int samples : {1, 32}) {
    EXPECT_DOUBLE_EQ(ti.peak_alive(0, 4, samples, 2), 4160.0 * samples + 65536) << samples;
    EXPECT_DOUBLE_EQ(ti.peak_alive(0, 4, samples, 1), infer.live_peak(0, 4, samples)) << samples;
    EXPECT_DOUBLE_EQ(ti.peak_alive(0, 4, samples, 3), 4160.0 * samples + 65536) << "scanned, " << samples;
  }
  // Inside the pair on 2 devices: y's and r's halves at the relu (128 + 128 per sample), r's half and o
  // twice (partial sum and sum) at the closing linear (128 + 64 + 64); m alive throughout.
  EXPECT_DOUBLE_EQ(ti.peak_alive(1, 3, 2, 2), 256.0 * 2 + 65536);

  const StageModel train(g, c, t, tensor_options(Mode::kTraining));
  const TensorModel tt(train);
  ASSERT_GT(train.saved(0, 4).fixed, 0);  // m, saved by the softmax
  for (int samples : {1, 32}) {
    // One device of a group runs the stage model's backward. (A range ending the graph differs on purpose:
    // a group keeps the outputs and the loss's tensor through the backward, TensorModel::activation.)
    for (int microbatches : {0, 1}) {
      const auto ours = tt.backward_peak(0, 3, samples, 1, there(microbatches));
      const auto stage = train.backward_peak(StageLoad{0, 3, samples}, microbatches == 1);
      EXPECT_DOUBLE_EQ(ours.beyond_state, stage.beyond_state) << samples << " " << microbatches;
      EXPECT_EQ(ours.unmade_gradients, stage.unmade_gradients) << samples << " " << microbatches;
    }
    const SampleBytes act = tt.activation(0, 4, 2);
    EXPECT_DOUBLE_EQ(act.fixed, train.activation(0, 4).fixed);  // m is replicated: whole on each device
  }
  // On 2 devices the fixed part of the backward's peak does not grow with the samples: 31 more samples add
  // 31 times a per-sample figure no larger than one device's per-sample bytes at the peak.
  const double grows = tt.backward_peak(0, 4, 32, 2, There::kAll).beyond_state -
                       tt.backward_peak(0, 4, 1, 2, There::kAll).beyond_state;
  EXPECT_LT(grows, 31.0 * (64 + 256 + 256 + 64 + 4096) * 2);
  EXPECT_GT(grows, 0);
}

// A weight computed tensor-parallel (Q @ R split by columns, then @ T closing the pair) is all-reduced once a
// run, whatever the samples.
TEST(TensorModel, AllReducesABatchFreeSumOnce) {
  using testing::f32;
  Graph g;
  const ValueId x = f32(g, g.add_input("x"), {4, 16});
  const ValueId q = f32(g, g.add_parameter("Q", true), {256, 16});
  const ValueId r = f32(g, g.add_parameter("R", true), {16, 256});
  const ValueId tw = f32(g, g.add_parameter("T", true), {256, 16});
  const ValueId s = f32(g, g.add_value(ValueKind::kTensor, "s"), {256, 256});
  const ValueId u = f32(g, g.add_value(ValueKind::kTensor, "u"), {256, 16});  // 16 KiB, all-reduced
  const ValueId z = f32(g, g.add_value(ValueKind::kTensor, "z"), {4, 256});
  testing::add_costed_nodes(
      g, {{"aten::matmul", {q, r}, {s}}, {"aten::matmul", {s, tw}, {u}}, {"aten::linear", {x, u}, {z}}}, {z});
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, tensor_options(Mode::kInference));
  const TensorModel tm(model);
  ASSERT_TRUE(tm.split(0) && tm.split(1) && !tm.split(2) && tm.all_reduce_after(1));
  const LinkSpec link = make_link(1, 5);
  const double expected = 2 * link.latency.value() + 16384.0 / link.bandwidth.value();  // p = 2
  for (int samples : {1, 32})
    EXPECT_DOUBLE_EQ(tm.communication(0, 2, samples, 2, link).value(), expected) << samples;
}

// A group of one is a plain device: its peak is StageModel's, on every range of random chains and of the
// tied-weight graph (a weight two nodes read: its gradient counts from the backward's start), with the
// gradients timed and not; every range but those ending the graph, where a group keeps the outputs and the
// loss's tensor through the backward (TensorModel::activation) and a plain device does not.
TEST(TensorModel, AGroupOfOnePeaksAsTheStageModel) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int64_t> size(1, 5000);
  std::vector<Graph> graphs{testing::tied_weight_graph()};
  for (int trial = 0; trial < 8; ++trial) {
    const int n = 2 + trial;
    std::vector<int64_t> acts, params;
    for (int i = 0; i < n; ++i) {
      acts.push_back(size(rng));
      params.push_back(size(rng));
    }
    graphs.push_back(testing::chain_graph(std::vector<double>(static_cast<size_t>(n), 1e9), acts, params));
  }
  for (size_t k = 0; k < graphs.size(); ++k) {
    const Graph& g = graphs[k];
    const Cluster c = make_cluster({make_spec("gpu", 1)}, make_link(1));
    const CostTable t = table_for(g, c);
    const StageModel model(g, c, t, tensor_options(Mode::kTraining));
    const TensorModel tm(model);
    for (NodeId first = 0; first < g.num_nodes() - 1; ++first) {
      for (NodeId last = first; last < g.num_nodes() - 1; ++last) {
        for (int samples = 1; samples <= 3; ++samples) {
          for (int microbatches : {0, 1}) {
            const StageLoad load{
                first, last,        samples, 1, Checkpointing::kNone, Offload::kNone, WeightHome::kHost,
                -1,    microbatches};
            const auto want = model.backward_peak(load);
            const auto got = tm.backward_peak(first, last, samples, 1, there(microbatches));
            ASSERT_NEAR(got.beyond_state, want.beyond_state, 1e-6)
                << "graph " << k << " [" << first << ", " << last << "] samples " << samples << " mb "
                << microbatches;
            ASSERT_EQ(got.unmade_gradients, want.unmade_gradients);
          }
          // With several microbatches the device's first backward holds only the gradients made by then:
          // what memory() adds to the model state is StageModel's, checkpointed or not.
          for (int microbatches : {2, 3, 5}) {
            for (int in_flight = 1; in_flight <= microbatches; ++in_flight) {
              for (Checkpointing ck : {Checkpointing::kNone, Checkpointing::kFull}) {
                const StageLoad load{
                    first, last, samples, in_flight, ck, Offload::kNone, WeightHome::kHost, -1, microbatches};
                const double want =
                    static_cast<double>((model.memory(load) - model.model_state(load)).value());
                const double got =
                    static_cast<double>((tm.memory(first, last, samples, 1, in_flight, -1, microbatches, ck) -
                                         tm.model_state(first, last, 1))
                                            .value());
                ASSERT_NEAR(got, want, 1.0)
                    << "graph " << k << " [" << first << ", " << last << "] samples " << samples << " mb "
                    << microbatches << " in flight " << in_flight;
              }
            }
          }
        }
      }
    }
  }
}

// 2 TFLOP of matmuls on two 1 TFLOP/s devices: 1 s of compute each plus the 1 ms all-reduce (one device: 2
// s).
TEST(TensorStrategy, TwoDevicesHalveTheMatmulsPlusOneAllReduce) {
  const Graph g = mlp_pair_graph(250'000);
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
  const Graph g = mlp_pair_graph(250'000);
  const Cluster c = make_cluster({make_spec("gpu", 1), make_spec("gpu", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  const PlanOutcome out = make_plan(g, c, t, tensor_options(Mode::kTraining));
  ASSERT_TRUE(out.plan) << out.error;
  EXPECT_NEAR(out.plan->prediction.step_time.value(), 3.002, 1e-9);
}

// Replicas of tensor-parallel groups (a kTensor group with tensor_size below its device count).
Plan replicated_tensor_plan(const Graph& g, Mode mode, int devices, int tensor_size, int batch) {
  Plan p;
  p.graph = graph_identity(g);
  p.mode = mode;
  p.strategy = StrategyKind::kHybrid;
  p.global_batch = batch;
  p.microbatches = 1;
  DeviceGroup group{{}, {}, GroupParallelism::kTensor, tensor_size};
  const std::vector<int> replica_shares = even_shares(batch, devices / tensor_size);
  for (int d = 0; d < devices; ++d) {
    group.devices.push_back("d" + std::to_string(d));
    group.batch_shares.push_back(replica_shares[static_cast<size_t>(d / tensor_size)]);
  }
  p.groups = {group};
  p.stages = {Stage{0, g.num_nodes() - 1, 0, Checkpointing::kNone, Offload::kNone}};
  return p;
}

// Two replicas of 2-way tensor parallelism, one sample each: every device runs what the 2-device tensor
// group runs on one sample (1.001 s); training adds one all-reduce of each device's weight shard between the
// replicas.
TEST(TensorHybrid, ReplicasOfTensorGroupsRunTheirShareAndAllReduceTheirShards) {
  const Graph g = mlp_pair_graph(250'000);
  const Cluster c = make_cluster(std::vector<DeviceSpec>(4, make_spec("gpu", 1)), make_link(1));
  const CostTable t = table_for(g, c);
  const Simulation infer = simulate(replicated_tensor_plan(g, Mode::kInference, 4, 2, 2), g, c, t);
  EXPECT_NEAR(infer.step_time.value(), 1.001, 1e-9);
  ASSERT_EQ(infer.prediction.devices.size(), 4u);
  for (const auto& d : infer.prediction.devices) EXPECT_NEAR(d.busy.value(), 1.001, 1e-9) << d.device;

  SearchOptions train_options;
  train_options.mode = Mode::kTraining;
  const Simulation train =
      simulate(replicated_tensor_plan(g, Mode::kTraining, 4, 2, 2), g, c, t, train_options);
  const StageModel model(g, c, t, train_options);
  const TensorModel tm(model);
  // Both weights are split: a device holds half of them.
  EXPECT_EQ(tm.trainable_bytes_per_device(0, 2, 2).value() * 2, model.trainable_bytes(0, 2).value());
  int allreduces = 0;
  for (const auto& task : train.tasks) {
    if (task.kind != TaskKind::kAllReduce) continue;
    ++allreduces;
    EXPECT_NEAR((task.end - task.start).value(),
                allreduce_time(tm.trainable_bytes_per_device(0, 2, 2), 2, make_link(1)).value(), 1e-12);
  }
  EXPECT_EQ(allreduces, 1);
  // One tensor group of all four devices has no replicas and no gradient all-reduce.
  const Simulation whole =
      simulate(replicated_tensor_plan(g, Mode::kTraining, 4, 4, 1), g, c, t, train_options);
  for (const auto& task : whole.tasks) EXPECT_NE(task.kind, TaskKind::kAllReduce) << task.name;
}

// The chain partitioner's cost of a tensor x data slot is what the simulator runs: per microbatch, the
// forward and backward tasks of each device; per step, the replicas' all-reduce.
TEST(TensorHybrid, ChainCostOfATensorSlotIsWhatTheSimulatorRuns) {
  const Graph g = mlp_pair_graph(250'000);
  const Cluster c = make_cluster(std::vector<DeviceSpec>(4, make_spec("gpu", 1)), make_link(1));
  const CostTable t = table_for(g, c);
  SearchOptions o;
  o.mode = Mode::kTraining;
  o.global_batch = 4;
  const StageModel model(g, c, t, o);
  const TensorModel tm(model);
  ChainSlot slot;
  slot.devices = {0, 1, 2, 3};
  slot.group_link = slot.next_link = slot.tensor_link = make_link(1);
  slot.tensor_size = 2;
  const ChainProblem problem{&model, {2}, {slot}, 2, 2, Schedule::kOneFOneB, &tm};
  const auto choice = evaluate_stage(problem, 0, 0, 2);
  ASSERT_TRUE(choice);
  EXPECT_EQ(choice->checkpointing, Checkpointing::kNone);
  const auto solution = partition_chain(problem);
  ASSERT_TRUE(solution);
  const Plan plan = chain_to_plan(problem, *solution, StrategyKind::kHybrid);
  ASSERT_EQ(plan.groups.size(), 1u);
  EXPECT_EQ(plan.groups[0].tensor_degree(), 2);
  EXPECT_EQ(plan.groups[0].replicas(), 2);
  EXPECT_EQ(plan.groups[0].batch_shares, (std::vector<int>{1, 1, 1, 1}));
  const Simulation sim = simulate(plan, g, c, t, o);
  Seconds device0(0), allreduce(0);
  for (const auto& task : sim.tasks) {
    if (task.kind == TaskKind::kAllReduce) allreduce += task.end - task.start;
    if ((task.kind == TaskKind::kForward || task.kind == TaskKind::kBackward) &&
        sim.resources[static_cast<size_t>(task.resource)].name == "d0")
      device0 += task.end - task.start;
  }
  EXPECT_NEAR(choice->per_microbatch.value() * 2, device0.value(), 1e-9);
  EXPECT_NEAR(choice->busy.value(), (device0 + allreduce).value(), 1e-9);
  // A device's simulated peak is the tensor model's memory, with the step's first backward holding only the
  // gradients made by then: 1F1B keeps one microbatch at each backward, GPipe both at the first.
  for (Schedule schedule : {Schedule::kOneFOneB, Schedule::kGPipe}) {
    Plan scheduled = plan;
    scheduled.schedule = schedule;
    const Simulation run = simulate(scheduled, g, c, t, o);
    const int kept = schedule == Schedule::kGPipe ? 2 : 1;
    for (const auto& d : run.prediction.devices) {
      EXPECT_NEAR(static_cast<double>(d.peak_memory.value()),
                  static_cast<double>(tm.memory(0, 2, 1, 2, kept, 0, 2).value()), 2.0)
          << schedule_name(schedule) << " " << d.device;
    }
  }
}

// Matmul chains (2-D weights, so every layer can be split) on eight devices: the layouts include tensor x
// data slots, and the dynamic program finds the brute-force optimum over them (a pruning bound that forgets
// the tensor split fails this).
TEST(TensorHybrid, DynamicProgramMatchesBruteForceWithTensorSlots) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  int feasible = 0, with_tensor = 0, deep_tensor = 0;
  for (int seed = 0; seed < 60; ++seed) {
    Graph g;
    ValueId x = g.add_input("x");
    g.value(x).tensors = {TensorMeta{{1, 64}, DType::kFloat32}};
    const int layers = 4 + seed % 6;
    for (int i = 0; i < layers; ++i) {
      const ValueId w = g.add_parameter("w" + std::to_string(i), true);
      g.value(w).tensors = {TensorMeta{{64 + static_cast<int64_t>(4000 * u(rng)), 64}, DType::kFloat32}};
      const ValueId y = g.add_value(ValueKind::kTensor, "y" + std::to_string(i));
      g.value(y).tensors = {TensorMeta{{1, 64 + static_cast<int64_t>(60000 * u(rng))}, DType::kFloat32}};
      const NodeId n = g.add_node("aten::linear", {x, w}, {y});
      g.node(n).cost = OpCost{Flops(1e9 + 1e10 * u(rng)), Bytes(0), Bytes(0), CostStatus::kEstimated};
      x = y;
    }
    g.set_outputs({x});
    const Cluster c = make_cluster(std::vector<DeviceSpec>(8, make_spec("gpu", 1 + 4 * u(rng))),
                                   make_link(1 + 40 * u(rng), 3));
    const CostTable t = table_for(g, c);
    SearchOptions o;
    o.mode = seed % 2 ? Mode::kTraining : Mode::kInference;
    o.global_batch = 8;
    o.memory_limit = Bytes(static_cast<int64_t>((1 + 6 * u(rng)) * (1 << 20)));
    const StageModel model(g, c, t, o);
    const TensorModel tm(model);
    const auto blocks = block_ends(model, 256);
    const auto layouts = hybrid_layouts(model, static_cast<int>(blocks.size()));
    const int m = 1 << (seed % 3);
    double want = -1;
    for (const auto& slots : layouts) {
      const ChainProblem prob{&model, blocks, slots, m, 8 / m, Schedule::kOneFOneB, &tm};
      if (auto s = partition_chain_brute_force(prob); s && (want < 0 || s->bottleneck.value() < want))
        want = s->bottleneck.value();
    }
    const auto got = best_hybrid(model, tm, blocks, layouts, m, Schedule::kOneFOneB);
    ASSERT_EQ(got.has_value(), want >= 0) << "seed " << seed;
    if (!got) continue;
    ++feasible;
    EXPECT_DOUBLE_EQ(got->solution.bottleneck.value(), want) << "seed " << seed;
    with_tensor += std::any_of(got->problem.slots.begin(), got->problem.slots.end(),
                               [](const ChainSlot& s) { return s.tensor_size > 1; });
    deep_tensor +=
        got->problem.slots.size() > 1 && std::any_of(got->problem.slots.begin(), got->problem.slots.end(),
                                                     [](const ChainSlot& s) { return s.tensor_size > 1; });
  }
  EXPECT_GT(feasible, 30);
  EXPECT_GT(with_tensor, 0);  // memory limits make some optimum split its weights
  EXPECT_GT(deep_tensor, 0);  // and some pipeline (where the dynamic program's pruning bound matters)
}

// Tensor slots need whole groups on one machine: 4 devices on two nodes give no 4-way group, but 2-way ones.
TEST(TensorHybrid, TensorGroupsStayOnOneNode) {
  const Graph g = mlp_pair_graph(250'000);
  Cluster c = make_cluster(std::vector<DeviceSpec>(4, make_spec("gpu", 1)), make_link(1));
  c.devices[2].node = c.devices[3].node = "node1";
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, SearchOptions{});
  std::set<int> sizes;
  for (const auto& layout : hybrid_layouts(model, 3)) {
    for (const auto& slot : layout) {
      sizes.insert(slot.tensor_size);
      if (slot.tensor_size == 2) {
        EXPECT_EQ(c.devices[static_cast<size_t>(slot.devices[0])].node,
                  c.devices[static_cast<size_t>(slot.devices[1])].node);
      }
    }
  }
  EXPECT_EQ(sizes, (std::set<int>{1, 2}));
}

TEST(TensorStrategy, NeedsTwoDevicesOfOneKind) {
  const Graph g = mlp_pair_graph(1000);
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("b", 2)}, make_link(1));
  const CostTable t = table_for(g, c);
  const StageModel model(g, c, t, tensor_options(Mode::kInference));
  EXPECT_TRUE(tensor_candidates(model).empty());
  const PlanOutcome out = make_plan(g, c, t, tensor_options(Mode::kInference));
  EXPECT_FALSE(out.plan);
  EXPECT_NE(out.error.find("strategy 'tensor' has nothing to offer"), std::string::npos);
}

// Two devices of one kind under a memory limit no tensor plan fits in: the error is about memory (it said
// the strategy had nothing to offer).
TEST(TensorStrategy, AMemoryLimitNothingFitsNamesTheSmallestMemory) {
  const Graph g = mlp_pair_graph(1000);
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("a", 1)}, make_link(1));
  const CostTable t = table_for(g, c);
  SearchOptions o = tensor_options(Mode::kInference);
  ASSERT_TRUE(make_plan(g, c, t, o).plan);
  o.memory_limit = Bytes(1024);
  const PlanOutcome out = make_plan(g, c, t, o);
  EXPECT_FALSE(out.plan);
  EXPECT_NE(out.error.find("no plan fits in memory"), std::string::npos) << out.error;
  EXPECT_TRUE(out.min_memory.has_value());
}

}  // namespace
}  // namespace partita

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
  g.set_outputs({o});
  return g;
}

// x f32[4,10] -> linear(w1) -> y -> relu_ (in place: y2 shares y's storage) -> linear(w2) -> o f32[4,10]
// (`op` replaces relu_; extra inputs follow y).
Graph inplace_chain(const std::string& op = "aten::relu_", const std::vector<std::string>& extra = {}) {
  Graph g;
  const auto set = [&](ValueId id, std::vector<int64_t> shape) {
    g.value(id).tensors = {TensorMeta{shape, DType::kFloat32}};
  };
  const ValueId x = g.add_input("x");
  set(x, {4, 10});
  const ValueId w1 = g.add_parameter("w1", true), w2 = g.add_parameter("w2", true);
  set(w1, {10, 10});
  set(w2, {10, 10});
  const ValueId y = g.add_value(ValueKind::kTensor, "y"), y2 = g.add_value(ValueKind::kTensor, "y2");
  const ValueId o = g.add_value(ValueKind::kTensor, "o");
  set(y, {4, 10});
  set(y2, {4, 10});
  set(o, {4, 10});
  g.add_node("aten::linear", {x, w1}, {y});
  std::vector<ValueId> inputs{y};
  for (const std::string& c : extra) inputs.push_back(g.add_constant(ValueKind::kScalar, c));
  g.add_node(op, inputs, {y2});
  g.add_node("aten::linear", {y2, w2}, {o});
  g.set_outputs({o});
  return g;
}

// x f32[1,1,4,4] -> conv(w) -> c f32[1,1,4,4] -> max_pool2d -> p f32[1,1,2,2]
Graph conv_pool() {
  Graph g;
  const auto set = [&](ValueId id, std::vector<int64_t> shape) {
    g.value(id).tensors = {TensorMeta{shape, DType::kFloat32}};
  };
  const ValueId x = g.add_input("x");
  set(x, {1, 1, 4, 4});
  const ValueId w = g.add_parameter("w", true);
  set(w, {1, 1, 3, 3});
  const ValueId c = g.add_value(ValueKind::kTensor, "c"), p = g.add_value(ValueKind::kTensor, "p");
  set(c, {1, 1, 4, 4});
  set(p, {1, 1, 2, 2});
  g.add_node("aten::_convolution", {x, w}, {c});
  g.add_node("aten::max_pool2d", {c}, {p});
  g.set_outputs({p});
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
  // x (input, 3200) and o (result, 3200) live throughout; linear saves x (its weight needs a gradient), relu
  // saves its output z (3200); the view and the add save nothing.
  EXPECT_EQ(saved_activation_bytes(g, 0, 3).value(), 9600);
  // y enters (3200); v (a view of z) leaves the range, so z's storage counts once as a result (3200).
  EXPECT_EQ(saved_activation_bytes(g, 1, 2).value(), 6400);
  EXPECT_THROW(saved_activation_bytes(g, 2, 1), Error);
  EXPECT_THROW(saved_activation_bytes(g, 0, 4), Error);
}

TEST(Memory, InPlaceResultsShareTheirInputsStorage) {
  // x 160 + o 160 live; relu_ saves y2 and the second linear saves y2 too: both are y's storage, 160 once.
  EXPECT_EQ(saved_activation_bytes(inplace_chain(), 0, 2).value(), 480);
}

TEST(Memory, AnInPlaceOpThatNeedsItsInputSavesACopyOfIt) {
  // hardtanh_ (ReLU6) keeps a copy of y from before it overwrote it (160), beside y's storage, which the
  // second linear saves as y2 (160); x and o live (160 each). relu_'s backward reads its result: no copy.
  const Graph g = inplace_chain("aten::hardtanh_", {"0.", "6."});
  EXPECT_EQ(saved_activation_bytes(g, 0, 2).value(), 640);
  EXPECT_EQ(saved_activations_by_producer(g).bytes, (std::vector<Bytes>{Bytes(160), Bytes(160), Bytes(0)}));
  EXPECT_EQ(saved_activations_by_producer(inplace_chain("aten::silu_")).bytes,
            (std::vector<Bytes>{Bytes(160), Bytes(160), Bytes(0)}));
  EXPECT_EQ(saved_activations_by_producer(inplace_chain("aten::leaky_relu_", {"0.1"})).bytes,
            (std::vector<Bytes>{Bytes(160), Bytes(0), Bytes(0)}));
}

TEST(Memory, ASavedStorageWithoutTheBatchIsMarkedBatchFree) {
  // x [4, 16] @ (W + A @ B): the second matmul saves x (a graph input: no producer) and the merged weight,
  // which no input that carries the batch feeds (1024 bytes at the add, all of them batch-free).
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
  const ValueId z = tensor(g.add_value(ValueKind::kTensor, "z"), {4, 16});
  g.add_node("aten::matmul", {a, b}, {ab});
  g.add_node("aten::add", {w, ab}, {merged});
  g.add_node("aten::matmul", {x, merged}, {y});
  g.add_node("aten::matmul", {y, merged}, {z});  // saves y (batch-dependent) and merged again
  g.set_outputs({z});
  const SavedByProducer s = saved_activations_by_producer(g);
  EXPECT_EQ(s.bytes, (std::vector<Bytes>{Bytes(0), Bytes(1024), Bytes(256), Bytes(0)}));
  EXPECT_EQ(s.batch_free, (std::vector<Bytes>{Bytes(0), Bytes(1024), Bytes(0), Bytes(0)}));
}

TEST(Memory, TrainingDropoutKeepsItsMask) {
  // dropout(y, p, train) between the linears returns a new tensor y2, which the second linear saves (160, at
  // the dropout); in training with p > 0 the dropout also keeps a mask of y's size (160).
  EXPECT_EQ(saved_activations_by_producer(inplace_chain("aten::dropout", {"0.5", "True"})).bytes,
            (std::vector<Bytes>{Bytes(0), Bytes(320), Bytes(0)}));
  EXPECT_EQ(saved_activations_by_producer(inplace_chain("aten::dropout", {"0.5", "False"})).bytes,
            (std::vector<Bytes>{Bytes(0), Bytes(160), Bytes(0)}));
  EXPECT_EQ(saved_activations_by_producer(inplace_chain("aten::dropout", {"0.", "True"})).bytes,
            (std::vector<Bytes>{Bytes(0), Bytes(160), Bytes(0)}));
}

// x f32[steps, batch, features] -> `op` (`gates` weight rows per hidden unit, `layers`, both directions or
// one) -> y f32[steps, batch, hidden x directions], with its states; weights as the params list of trainable
// parameters, every list value annotated with its tensors as annotate_shapes leaves them.
struct RecurrentShape {
  int64_t steps = 10, batch = 4, features = 8, hidden = 16;
};
Graph recurrent_layer(const std::string& op, int64_t gates, int64_t layers, bool bidirectional,
                      RecurrentShape shape = {}) {
  Graph g;
  const auto tensor = [&](ValueId id, std::vector<int64_t> dims) {
    g.value(id).tensors = {TensorMeta{std::move(dims), DType::kFloat32}};
    return id;
  };
  const auto list = [&](const std::vector<ValueId>& items) {
    const ValueId l = g.add_value(ValueKind::kList, "");
    for (ValueId i : items) g.value(l).tensors.push_back(g.value(i).tensors.at(0));
    g.add_node("prim::ListConstruct", items, {l});
    return l;
  };
  const int64_t directions = bidirectional ? 2 : 1, hidden = shape.hidden, batch = shape.batch;
  const ValueId x = tensor(g.add_input("x"), {shape.steps, batch, shape.features});
  std::vector<ValueId> weights;
  for (int64_t l = 0; l < layers; ++l) {
    for (int64_t d = 0; d < directions; ++d) {
      const int64_t in = l == 0 ? shape.features : hidden * directions;
      weights.push_back(tensor(g.add_parameter("w_ih", true), {gates * hidden, in}));
      weights.push_back(tensor(g.add_parameter("w_hh", true), {gates * hidden, hidden}));
      weights.push_back(tensor(g.add_parameter("b_ih", true), {gates * hidden}));
      weights.push_back(tensor(g.add_parameter("b_hh", true), {gates * hidden}));
    }
  }
  const ValueId h0 = tensor(g.add_constant(ValueKind::kTensor, "h0"), {layers * directions, batch, hidden});
  const ValueId hx = op == "aten::lstm" ? list({h0, h0}) : h0;
  const auto constant = [&](const char* printed) { return g.add_constant(ValueKind::kScalar, printed); };
  const ValueId y = tensor(g.add_value(ValueKind::kTensor, "y"), {shape.steps, batch, hidden * directions});
  std::vector<ValueId> outputs{
      y, tensor(g.add_value(ValueKind::kTensor, "hy"), {layers * directions, batch, hidden})};
  if (op == "aten::lstm")
    outputs.push_back(tensor(g.add_value(ValueKind::kTensor, "cy"), {layers * directions, batch, hidden}));
  g.add_node(
      op,
      {x, hx, list(weights), constant("True"), constant(std::to_string(layers).c_str()), constant("0."),
       constant("True"), constant(bidirectional ? "True" : "False"), constant("False")},
      outputs);
  g.set_outputs({y});
  return g;
}

// A recurrent layer's backward keeps what its unrolled cells save: the bytes autograd saves after nn.LSTM,
// nn.GRU and nn.RNN(tanh) forwards of the same shapes (their input and weights aside), read off their
// `_saved_*` tensors with torch 1.13 (LSTM and GRU 17,920 / 38,400 / 76,800 bytes at 1 layer / 2 layers /
// 2 bidirectional layers; Elman 2,816 / 8,192 / 16,384).
TEST(Memory, RecurrentLayersKeepWhatTheirUnrolledCellsSave) {
  struct Case {
    const char* op;
    int64_t gates;
    int64_t one, two, two_bidirectional;
  };
  for (const Case& c : {Case{"aten::lstm", 4, 17920, 38400, 76800}, Case{"aten::gru", 3, 17920, 38400, 76800},
                        Case{"aten::rnn_tanh", 1, 2816, 8192, 16384}}) {
    const auto saved = [&](int64_t layers, bool bidirectional) {
      const Graph g = recurrent_layer(c.op, c.gates, layers, bidirectional);
      const NodeId layer = g.num_nodes() - 1;
      EXPECT_EQ(g.node(layer).op, c.op);
      return saved_activations_by_producer(g).bytes.at(static_cast<size_t>(layer)).value();
    };
    EXPECT_EQ(saved(1, false), c.one) << c.op;
    EXPECT_EQ(saved(2, false), c.two) << c.op;
    EXPECT_EQ(saved(2, true), c.two_bidirectional) << c.op;
  }
}

// The working memory `scratch_bytes` (kernel_scratch_bytes or training_kernel_scratch_bytes) gives one
// recurrent layer at the shapes the layers were measured at (50 steps, batch 8, 8 features, hidden 32), in
// quanta of 50 x 8 x 32 floats (50 KiB) on a CPU.
const RecurrentShape kMeasuredRecurrent{50, 8, 8, 32};
double recurrent_working_quanta(double (*scratch_bytes)(const KernelScratch&, double, const KernelSite&),
                                const char* op, int64_t gates, int64_t layers, bool bidirectional) {
  const std::vector<KernelScratch> k =
      kernel_scratch(recurrent_layer(op, gates, layers, bidirectional, kMeasuredRecurrent));
  EXPECT_EQ(k.size(), 1u) << op;
  return k.empty() ? 0.0 : scratch_bytes(k[0], 1.0, KernelSite{true, 1}) / (50 * 1024);
}

// A recurrent layer's forward holds its sequence's input projection and step outputs (and, below the last
// layer, the layer below's output): recurrent_working_elements at the shapes it was measured at, 50 steps,
// batch 8, hidden 32 (a quantum of 50 x 8 x 32 floats = 50 KiB). Measured peak beyond the rest of the model:
// LSTM 252.5 KiB, 2 layers 303; GRU 201, 2 layers 251; Elman 101, 2 layers 151; bidirectional LSTM 402.5,
// 2 layers 504 (the few KiB over are a step's temporaries).
TEST(Memory, RecurrentLayersHoldTheirProjectedSequenceAndStepOutputsWhileTheyRun) {
  const auto working = [](const char* op, int64_t gates, int64_t layers, bool bidirectional) {
    return recurrent_working_quanta(kernel_scratch_bytes, op, gates, layers, bidirectional);
  };
  EXPECT_EQ(working("aten::lstm", 4, 1, false), 5);
  EXPECT_EQ(working("aten::lstm", 4, 2, false), 6);
  EXPECT_EQ(working("aten::gru", 3, 1, false), 4);
  EXPECT_EQ(working("aten::gru", 3, 2, false), 5);
  EXPECT_EQ(working("aten::rnn_tanh", 1, 1, false), 2);
  EXPECT_EQ(working("aten::rnn_tanh", 1, 2, false), 3);
  EXPECT_EQ(working("aten::lstm", 4, 1, true), 8);
  EXPECT_EQ(working("aten::lstm", 4, 2, true), 10);
  // A replica with half the batch holds half.
  const std::vector<KernelScratch> k =
      kernel_scratch(recurrent_layer("aten::lstm", 4, 1, false, kMeasuredRecurrent));
  ASSERT_EQ(k.size(), 1u);
  EXPECT_EQ(kernel_scratch_bytes(k[0], 0.5, KernelSite{true, 1}), 2.5 * 50 * 1024);
}

TEST(Memory, MaxPoolKeepsItsInputAndInt64Indices) {
  // x 64 + p 16 live; the conv saves x (already live); max_pool saves c (64) and 4 int64 indices (32).
  EXPECT_EQ(saved_activation_bytes(conv_pool(), 0, 1).value(), 176);
}

TEST(Memory, SavedActivationsByProducer) {
  // mlp: linear saves the graph input x (no producer), relu saves its own output z (3200); view and add save
  // nothing, and v (a view of z) shares z's storage.
  const SavedByProducer mlp_saved = saved_activations_by_producer(mlp());
  EXPECT_EQ(mlp_saved.bytes, (std::vector<Bytes>{Bytes(0), Bytes(3200), Bytes(0), Bytes(0)}));
  const Graph g = mlp();
  const ValueId z = g.node(1).outputs[0], v = g.node(2).outputs[0], o = g.node(3).outputs[0];
  EXPECT_EQ(mlp_saved.root[static_cast<size_t>(v)], z);
  EXPECT_TRUE(mlp_saved.saved[static_cast<size_t>(v)]);
  EXPECT_FALSE(mlp_saved.saved[static_cast<size_t>(o)]);
  // inplace_chain: y (produced by the first linear) is saved by relu_ (as y2, its storage) and by the second
  // linear: 160 bytes once, at its producer.
  EXPECT_EQ(saved_activations_by_producer(inplace_chain()).bytes,
            (std::vector<Bytes>{Bytes(160), Bytes(0), Bytes(0)}));
  // conv_pool: max_pool saves c (64, produced by the conv) and its own 4 int64 indices (32).
  EXPECT_EQ(saved_activations_by_producer(conv_pool()).bytes, (std::vector<Bytes>{Bytes(64), Bytes(32)}));
}

// Attention-like: x f32[2,8,12] -> linear(w) -> y -> view [2,8,3,4] -> transpose(1, 2) (heads_first: two
// views to [2,3,8,4]) -> q f32[2,3,8,4]; kt = transpose(q, -2, -1) f32[2,3,4,8]; s = matmul(q, kt)
// f32[2,3,8,8].
Graph attention_scores(bool heads_first) {
  Graph g;
  const auto set = [&](ValueId id, std::vector<int64_t> shape) {
    g.value(id).tensors = {TensorMeta{shape, DType::kFloat32}};
  };
  const ValueId x = g.add_input("x");
  set(x, {2, 8, 12});
  const ValueId w = g.add_parameter("w", true);
  set(w, {12, 12});
  const ValueId y = g.add_value(ValueKind::kTensor, "y"), h = g.add_value(ValueKind::kTensor, "h");
  const ValueId q = g.add_value(ValueKind::kTensor, "q"), kt = g.add_value(ValueKind::kTensor, "kt");
  const ValueId sc = g.add_value(ValueKind::kTensor, "s");
  set(y, {2, 8, 12});
  set(kt, {2, 3, 4, 8});
  set(sc, {2, 3, 8, 8});
  g.add_node("aten::linear", {x, w}, {y});
  const auto c = [&](const std::string& printed) { return g.add_constant(ValueKind::kScalar, printed); };
  if (heads_first) {  // two views, so that both graphs have the same nodes
    set(h, {2, 3, 8, 4});
    set(q, {2, 3, 8, 4});
    g.add_node("aten::view", {y, c("[2, 3, 8, 4]")}, {h});
    g.add_node("aten::view", {h, c("[2, 3, 8, 4]")}, {q});
  } else {
    set(h, {2, 8, 3, 4});
    set(q, {2, 3, 8, 4});
    g.add_node("aten::view", {y, c("[2, 8, 3, 4]")}, {h});
    g.add_node("aten::transpose", {h, c("1"), c("2")}, {q});
  }
  g.add_node("aten::transpose", {q, c("-2"), c("-1")}, {kt});
  g.add_node("aten::matmul", {q, kt}, {sc});
  g.set_outputs({sc});
  return g;
}

// aten::matmul folds the batch dimensions with a reshape, which copies an operand whose batch dimensions a
// transpose moved (attention's heads): autograd saves the copies, not the storage they came from. A
// transpose of the last two dimensions alone folds without a copy.
TEST(Memory, BatchedMatmulSavesCopiesOfOperandsWithMovedBatchDimensions) {
  const Graph moved = attention_scores(false);
  const SavedByProducer m = saved_activations_by_producer(moved);
  // q and kt, 768 bytes each, copied at the matmul (node 4); y (768) is no longer saved by anyone.
  EXPECT_EQ(m.bytes, (std::vector<Bytes>{Bytes(0), Bytes(0), Bytes(0), Bytes(0), Bytes(1536)}));
  EXPECT_FALSE(m.saved[static_cast<size_t>(moved.node(0).outputs[0])]);
  const Graph kept = attention_scores(true);
  const SavedByProducer k = saved_activations_by_producer(kept);
  // Both operands are views of y's storage (768), saved once at its producer, the linear.
  EXPECT_EQ(k.bytes, (std::vector<Bytes>{Bytes(768), Bytes(0), Bytes(0), Bytes(0), Bytes(0)}));
  EXPECT_TRUE(k.saved[static_cast<size_t>(kept.node(0).outputs[0])]);
}

TEST(Memory, ParameterBytesOfARange) {
  const Graph g = mlp();
  EXPECT_EQ(range_parameter_bytes(g, 0, 3, true).value(), 40400);   // w 40000 + b 400
  EXPECT_EQ(range_parameter_bytes(g, 0, 3, false).value(), 43600);  // + rm 3200
  EXPECT_EQ(range_parameter_bytes(g, 1, 2, false).value(), 0);
}

TEST(Memory, TrainingEstimate) {
  // Walking backward (per microbatch, whole batch): live io = x + o = 6400 throughout.
  //   node 3 (add):    saved z 3200, grads 0,     in flight: z's gradient 3200 (v is z's storage)
  //   node 2 (view):   saved z 3200, grads 0,     in flight: z 3200
  //   node 1 (relu):   saved z 3200, grads 0,     in flight: z 3200 + y's new gradient 3200
  //   node 0 (linear): saved 0,      grads 40400, in flight: y 3200
  // With batch_fraction 0.5 the totals are 6400, 6400, 8000 and 40400 + 4800: the peak is at node 0.
  // The other microbatch in flight (2 - 1) holds its io and everything saved: (6400 + 3200) x 0.5.
  const MemoryEstimate m = estimate_memory(mlp(), 0, 3, true, Optimizer::kAdam, 2, 0.5);
  EXPECT_EQ(m.parameters.value(), 43600);
  EXPECT_EQ(m.gradients.value(), 40400);
  EXPECT_EQ(m.optimizer_state.value(), 80800);
  EXPECT_EQ(m.activations.value(), 3200 + 4800);
  EXPECT_EQ(m.workspace.value(), 1600);
  EXPECT_EQ(m.total().value(), 43600 + 40400 + 80800 + 8000 + 1600);
}

TEST(Memory, TrainingPeakEarlyInBackward) {
  // conv_pool with a matmul in place of the convolution (the same saved tensors, no working memory of its
  // own), SGD: node 1 (max_pool): saved c 64 + indices 32, grads 0, in flight: c's new gradient 64;
  // node 0: saved 0, grads 36 (w), in flight: c's gradient 64 (x needs none). io = 80. The forward holds
  // less: at node 1, io + saved 96 + the dropped indices 32.
  Graph g = conv_pool();
  g.mutable_nodes()[0].op = "aten::matmul";
  const MemoryEstimate m = estimate_memory(g, 0, 1, true, Optimizer::kSgd, 1, 1.0);
  EXPECT_EQ(m.gradients.value(), 0);
  EXPECT_EQ(m.activations.value(), 80 + 96);
  EXPECT_EQ(m.workspace.value(), 64);
  EXPECT_EQ(m.total().value(), 36 + 80 + 96 + 64);
}

TEST(Memory, TrainingForwardHoldsWhatWasSavedAndTheKernelsWorkingMemory) {
  // conv_pool, SGD, at an unknown site: node 0's forward (the convolution) holds io 80, its output c (64,
  // saved only by the max pooling after it) and its working memory, a copy of its input and output (64 + 64):
  // 80 + 192, more than backward's 276 - 36. No gradient exists yet.
  const MemoryEstimate m = estimate_memory(conv_pool(), 0, 1, true, Optimizer::kSgd, 1, 1.0);
  EXPECT_EQ(m.gradients.value(), 0);
  EXPECT_EQ(m.activations.value(), 80);
  EXPECT_EQ(m.workspace.value(), 64 + 128);
  EXPECT_EQ(m.total().value(), 36 + 80 + 192);
}

TEST(Memory, RecurrentLayersHoldTheirProjectedSequenceInATrainingForward) {
  // Beyond what autograd keeps: gates x hidden per token, and each direction's stack with two directions.
  const auto working = [](const char* op, int64_t gates, int64_t layers, bool bidirectional) {
    return recurrent_working_quanta(training_kernel_scratch_bytes, op, gates, layers, bidirectional);
  };
  EXPECT_EQ(working("aten::lstm", 4, 1, false), 4);
  EXPECT_EQ(working("aten::lstm", 4, 2, false), 4);
  EXPECT_EQ(working("aten::gru", 3, 2, false), 3);
  EXPECT_EQ(working("aten::rnn_tanh", 1, 1, false), 1);
  EXPECT_EQ(working("aten::lstm", 4, 2, true), 6);
  // The training peak of a lone LSTM layer comes in its forward: x and y (io), what it saves (7 x hidden per
  // token) and its projected sequence, before any gradient, beside its weights. Measured 637.84 KiB with
  // the weights (bench/recurrent_memory.sh, lstm1): this gives 640.5 (+0.4%).
  const Graph lstm = recurrent_layer("aten::lstm", 4, 1, false, kMeasuredRecurrent);
  const MemoryEstimate m = estimate_memory(lstm, 0, lstm.num_nodes() - 1, true, Optimizer::kSgd, 1, 1.0);
  EXPECT_EQ(m.gradients.value(), 0);
  const double tokens = 50 * 8, kib = 1024;
  EXPECT_GE(m.workspace.value(), 4 * tokens * 32 * 4);
  EXPECT_NEAR(static_cast<double>(m.total().value()) / kib, 637.84, 637.84 * 0.02);
}

TEST(Memory, InferenceEstimate) {
  const MemoryEstimate m = estimate_memory(mlp(), 0, 3, false, Optimizer::kAdam, 1, 1.0);
  EXPECT_EQ(m.gradients.value(), 0);
  EXPECT_EQ(m.optimizer_state.value(), 0);
  EXPECT_EQ(m.activations.value(), 3200);  // the range's input x
  // Alive while each node runs: x+y, y+z, z (v is a view of it), z+o: at most 6400, x's 3200 included.
  EXPECT_EQ(live_bytes_per_node(mlp()),
            (std::vector<Bytes>{Bytes(6400), Bytes(6400), Bytes(3200), Bytes(6400)}));
  EXPECT_EQ(m.workspace.value(), 3200);
  EXPECT_EQ(m.total().value(), 43600 + 3200 + 3200);
  // Storages alone: x 64 + c 64, then c + p 16. On a device not known, the convolution's working memory is
  // a copy of its input and output (+128) and max pooling's indices 4 x 8 bytes: peak 256, input x 64.
  EXPECT_EQ(live_bytes_per_node(conv_pool()), (std::vector<Bytes>{Bytes(128), Bytes(80)}));
  const MemoryEstimate cp = estimate_memory(conv_pool(), 0, 1, false, Optimizer::kSgd, 1, 1.0);
  EXPECT_EQ(cp.activations.value(), 64);
  EXPECT_EQ(cp.workspace.value(), 256 - 64);
  EXPECT_THROW(estimate_memory(mlp(), 0, 3, false, Optimizer::kSgd, 0, 1.0), Error);
  EXPECT_THROW(estimate_memory(mlp(), 0, 3, false, Optimizer::kSgd, 1, 1.5), Error);
}

// A device of a tensor-parallel group holds a share of split storages; a view counts by its storage's share.
TEST(Memory, LiveBytesCountEachStorageByItsShare) {
  const Graph g = mlp();
  const std::vector<ValueId> root = saved_activations_by_producer(g).root;
  const auto id = [&](const char* name) {
    for (ValueId v = 0; v < g.num_values(); ++v)
      if (g.value(v).name == name) return v;
    ADD_FAILURE() << "no value " << name;
    return ValueId{0};
  };
  std::vector<double> share(static_cast<size_t>(g.num_values()), 1.0);
  share[static_cast<size_t>(id("y"))] = 0.25;
  share[static_cast<size_t>(id("z"))] = 0.5;
  share[static_cast<size_t>(id("v"))] = 0.0;  // a view of z: z's share holds
  // x 3200 + y/4; y/4 + z/2; z/2 (v its view); z/2 + o 3200.
  EXPECT_EQ(live_bytes_per_node(g, root, share), (std::vector<double>{4000, 2400, 1600, 4800}));
  // Whole shares give the byte counts above.
  const std::vector<double> whole(share.size(), 1.0);
  EXPECT_EQ(live_bytes_per_node(g, root, whole), (std::vector<double>{6400, 6400, 3200, 6400}));
}

// x f32[rows, c, hw, hw] -> convolution(w f32[c_out, c / groups, k, k], stride) -> y; only the facts the
// kernel model reads.
Graph one_conv(int64_t rows, int64_t c, int64_t c_out, int64_t k, int64_t hw, int64_t stride = 1,
               int64_t groups = 1) {
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{rows, c, hw, hw}, DType::kFloat32}};
  const ValueId w = g.add_parameter("w", true);
  g.value(w).tensors = {TensorMeta{{c_out, c / groups, k, k}, DType::kFloat32}};
  const ValueId none = g.add_constant(ValueKind::kNone, "None");
  const ValueId s =
      g.add_constant(ValueKind::kList, "[" + std::to_string(stride) + ", " + std::to_string(stride) + "]");
  const ValueId pad =
      g.add_constant(ValueKind::kList, "[" + std::to_string(k / 2) + ", " + std::to_string(k / 2) + "]");
  const ValueId one = g.add_constant(ValueKind::kList, "[1, 1]");
  const ValueId y = g.add_value(ValueKind::kTensor, "y");
  const int64_t out = (hw + 2 * (k / 2) - k) / stride + 1;
  g.value(y).tensors = {TensorMeta{{rows, c_out, out, out}, DType::kFloat32}};
  g.add_node("aten::conv2d",
             {x, w, none, s, pad, one, g.add_constant(ValueKind::kScalar, std::to_string(groups))}, {y});
  g.set_outputs({y});
  return g;
}

double conv_scratch(const Graph& g, double fraction, KernelSite site) {
  const std::vector<KernelScratch> k = kernel_scratch(g);
  EXPECT_EQ(k.size(), 1u);
  return k.empty() ? -1 : kernel_scratch_bytes(k[0], fraction, site);
}

// Each case is a one-op model measured with `partita estimate --measure` (LibTorch 1.13, counting allocator;
// bench/kernel_scratch.py): the bytes beyond weight, input and output, less ~2 KiB the run holds anyway.
TEST(Memory, CpuConvolutionWorkingMemoryFollowsLibTorchsKernelChoice) {
  const KernelSite one_thread{true, 1}, two_threads{true, 2}, gpu{};
  // 512 -> 512 channels, 3x3, 4x4: two rows run in oneDNN, which reorders the 9 MiB weight (measured +9411
  // KiB = weight 9216 + input 64 + ...); one row (8,192 input elements) in the native kernel: its column
  // buffer 512 x 9 x 16 floats = 288 KiB (measured 352 KiB with input and output, 358 in all).
  const Graph big = one_conv(2, 512, 512, 3, 4);
  EXPECT_DOUBLE_EQ(conv_scratch(big, 1.0, one_thread), 2 * 512 * 16 * 4 + 9437184.0);
  EXPECT_DOUBLE_EQ(conv_scratch(big, 0.5, one_thread), 512 * 9 * 16 * 4.0);
  // A GPU (or a site not known) keeps the old figure: a copy of the input and the output, by the batch.
  EXPECT_DOUBLE_EQ(conv_scratch(big, 0.5, gpu), 2 * 512 * 16 * 4.0);
  // 64 -> 128 channels, 28x28, two rows: oneDNN; the output (784 KiB) outweighs input + weight (392 + 288):
  // measured 2250 KiB in all = weight 288 + input 392 + output 784 + 784 (+2).
  EXPECT_DOUBLE_EQ(conv_scratch(one_conv(2, 64, 128, 3, 28), 1.0, one_thread), 2 * 128 * 784 * 4.0);
  // One row of 50,176 input elements (above 20,480) still runs in oneDNN.
  EXPECT_DOUBLE_EQ(conv_scratch(one_conv(1, 64, 64, 3, 28), 1.0, one_thread), 64 * 784 * 4 + 147456.0);
  // An unstrided 1x1 kernel on 2 rows: native single-threaded (no column buffer: measured +0), oneDNN on two
  // threads (measured +144 KiB = input 128 + weight 16); from 16 rows oneDNN either way (+1040 KiB).
  const Graph pointwise = one_conv(16, 64, 64, 1, 16);
  EXPECT_DOUBLE_EQ(conv_scratch(pointwise, 2.0 / 16, one_thread), 0.0);
  EXPECT_DOUBLE_EQ(conv_scratch(pointwise, 2.0 / 16, two_threads), 2 * 64 * 256 * 4 + 16384.0);
  EXPECT_DOUBLE_EQ(conv_scratch(pointwise, 1.0, one_thread), 16 * 64 * 256 * 4 + 16384.0);
  // Strided 1x1, one row: native with a column buffer of the output positions (measured +16 KiB).
  EXPECT_DOUBLE_EQ(conv_scratch(one_conv(1, 64, 64, 1, 16, 2), 1.0, one_thread), 64 * 64 * 4.0);
  // Depthwise (groups > 1), one row: oneDNN (measured +201 KiB = input 64 + 64 + weight 9).
  EXPECT_DOUBLE_EQ(conv_scratch(one_conv(1, 256, 256, 3, 8, 1, 256), 1.0, one_thread), 65536 + 9216.0);
  // A 5x5 kernel, one row: oneDNN (measured +108 KiB = input 8 + weight 100).
  EXPECT_DOUBLE_EQ(conv_scratch(one_conv(1, 32, 32, 5, 8), 1.0, one_thread), 8192 + 102400.0);
}

// A CPU convolution's backward in oneDNN holds a copy of its input beyond the gradients in flight (one 3x3
// convolution trained on 8 rows, 32 -> 64 channels at 8x8: 64 KiB over the prediction without it, 16 -> 32
// at 16x16: 128 KiB); the native kernel (one row) makes its column buffer again beside the weight's gradient
// (scripts/memory-timeline on the same models; bench/conv_backward_memory.sh); GPUs and other kernels: not
// modelled.
TEST(Memory, ACpuConvolutionsBackwardHoldsACopyOfItsInputInOneDnnAndItsColumnsNatively) {
  const KernelSite one_thread{true, 1}, gpu{};
  const std::vector<KernelScratch> k = kernel_scratch(one_conv(2, 512, 512, 3, 4));
  ASSERT_EQ(k.size(), 1u);
  EXPECT_DOUBLE_EQ(backward_kernel_scratch_bytes(k[0], 1.0, one_thread), 2 * 512 * 16 * 4.0);  // two rows
  EXPECT_DOUBLE_EQ(backward_kernel_scratch_bytes(k[0], 0.5, one_thread), 512 * 9 * 16 * 4.0);  // native
  EXPECT_DOUBLE_EQ(backward_kernel_scratch_bytes(k[0], 1.0, gpu), 0.0);
  const std::vector<KernelScratch> pool = kernel_scratch(conv_pool());
  ASSERT_EQ(pool.size(), 2u);
  EXPECT_DOUBLE_EQ(backward_kernel_scratch_bytes(pool[1], 1.0, one_thread), 0.0);
}

// max_pool2d computes int64 argmax indices and drops them (measured: 128 x 32 x 32 input at stride 1 holds
// 2 MiB at one row = input + output + 1 MiB of indices).
TEST(Memory, MaxPoolHoldsItsDroppedIndicesWhileItRuns) {
  const std::vector<KernelScratch> k = kernel_scratch(conv_pool());
  ASSERT_EQ(k.size(), 2u);
  EXPECT_EQ(k[1].node, 1);
  EXPECT_DOUBLE_EQ(kernel_scratch_bytes(k[1], 1.0, KernelSite{true, 1}), 4 * 8.0);
  EXPECT_DOUBLE_EQ(kernel_scratch_bytes(k[1], 0.5, KernelSite{}), 2 * 8.0);
}

}  // namespace
}  // namespace partita

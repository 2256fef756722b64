#include <gtest/gtest.h>

#include "partita/graph/analysis.h"
#include "test_graphs.h"

namespace partita {
namespace {

using namespace partita::testing;

NodeParallelism last(const Graph& g, ExecutionMode mode = ExecutionMode::kInference) {
  return analyze_parallelism(g, mode).back();
}
ValueId flag(Graph& g, bool b) { return g.add_constant(ValueKind::kScalar, b ? "True" : "False"); }

TEST(Parallelism, WeightOpsAreTensorParallelCandidates) {
  Graph g;
  const ValueId x = input(g, {8, 256});
  const ValueId w = parameter(g, "fc.weight", {512, 256});
  op(g, "aten::linear", {x, w, none(g)}, {8, 512});
  EXPECT_EQ(last(g).tensor_parallel, TensorParallel::kColumnRow);
  // addmm(bias, x, weight.t()) as older traces emit it.
  const ValueId wt = op(g, "aten::t", {w}, {256, 512});
  op(g, "aten::addmm", {parameter(g, "fc.bias", {512}), x, wt, int_constant(g, "1"), int_constant(g, "1")},
     {8, 512});
  EXPECT_EQ(last(g).tensor_parallel, TensorParallel::kColumnRow);
  op(g, "aten::matmul", {x, x}, {8, 8});  // two activations
  EXPECT_EQ(last(g).tensor_parallel, TensorParallel::kNone);
  const Graph r = residual(false);
  const auto p = analyze_parallelism(r, ExecutionMode::kInference);
  EXPECT_EQ(p[1].tensor_parallel, TensorParallel::kOutputChannel);
  EXPECT_EQ(p[0].tensor_parallel, TensorParallel::kNone);
  EXPECT_TRUE(p[1].batch_splittable);
  EXPECT_EQ(p[1].node, 1);
}

TEST(Parallelism, AttentionMatmulPairSplitsByHeads) {
  Graph g;
  const ValueId q = input(g, {2, 4, 16, 8}, "q");
  const ValueId k = input(g, {2, 4, 16, 8}, "k");
  const ValueId v = input(g, {2, 4, 16, 8}, "v");
  const ValueId kt =
      op(g, "aten::transpose", {k, int_constant(g, "-2"), int_constant(g, "-1")}, {2, 4, 8, 16});
  const ValueId s = op(g, "aten::matmul", {q, kt}, {2, 4, 16, 16});                                    // n1
  const ValueId scaled = op(g, "aten::div", {s, int_constant(g, "8")}, {2, 4, 16, 16});                // n2
  const ValueId a = op(g, "aten::softmax", {scaled, int_constant(g, "-1"), none(g)}, {2, 4, 16, 16});  // n3
  op(g, "aten::matmul", {a, v}, {2, 4, 16, 8});                                                        // n4
  const auto p = analyze_parallelism(g, ExecutionMode::kInference);
  EXPECT_EQ(p[0].tensor_parallel, TensorParallel::kNone);
  EXPECT_EQ(p[1].tensor_parallel, TensorParallel::kHeads);
  EXPECT_EQ(p[2].tensor_parallel, TensorParallel::kNone);
  EXPECT_EQ(p[3].tensor_parallel, TensorParallel::kHeads);
  EXPECT_EQ(p[4].tensor_parallel, TensorParallel::kHeads);
  for (const auto& n : p) EXPECT_TRUE(n.batch_splittable) << n.node << ": " << n.reason;
}

TEST(Parallelism, MatmulWithoutSoftmaxIsNotAttention) {
  Graph g;
  const ValueId a = input(g, {2, 4, 4}, "a");
  const ValueId b = op(g, "aten::bmm", {a, a}, {2, 4, 4});
  op(g, "aten::bmm", {op(g, "aten::relu", {b}, {2, 4, 4}), a}, {2, 4, 4});
  for (const auto& n : analyze_parallelism(g, ExecutionMode::kInference)) {
    EXPECT_EQ(n.tensor_parallel, TensorParallel::kNone) << n.node;
  }
}

TEST(Parallelism, BatchNormDependsOnTrainingFlagAndMode) {
  const Graph eval = residual(false);  // batch_norm nodes 2 and 5 with training=False
  auto p = analyze_parallelism(eval, ExecutionMode::kInference);
  EXPECT_TRUE(p[2].batch_splittable);
  p = analyze_parallelism(eval, ExecutionMode::kTraining);
  EXPECT_FALSE(p[2].batch_splittable);
  EXPECT_FALSE(p[2].suspect);
  EXPECT_NE(p[2].reason.find("batch statistics"), std::string::npos);
  EXPECT_TRUE(p[3].batch_splittable);

  Graph g;
  const ValueId x = input(g, {2, 4});
  const ValueId w = parameter(g, "bn.weight", {4});
  op(g, "aten::batch_norm",
     {x, w, w, w, w, flag(g, true), int_constant(g, "0"), int_constant(g, "0"), flag(g, true)}, {2, 4});
  EXPECT_FALSE(last(g).batch_splittable);
}

// x.div_(255) on the first input is a write into the caller's tensor; an in-place op on an intermediate, or
// one that only reads an input, is not.
TEST(Parallelism, InputsWrittenInPlace) {
  Graph g;
  const ValueId x = input(g, {8, 16}, "x");
  const ValueId m = input(g, {8, 16}, "mask");
  const ValueId y = op(g, "aten::mul", {x, m}, {8, 16});
  op(g, "aten::relu_", {y}, {8, 16});
  op(g, "aten::add_", {y, m, int_constant(g, "1")}, {8, 16});  // reads mask, writes y
  op(g, "aten::__and__", {m, m}, {8, 16});                     // a dunder op returns a new value
  EXPECT_EQ(inputs_written_in_place(g), (std::vector<bool>{false, false}));
  op(g, "aten::div_", {m, int_constant(g, "255")}, {8, 16});
  EXPECT_EQ(inputs_written_in_place(g), (std::vector<bool>{false, true}));
}

// x[:, :4].mul_(0.5) writes x through a view; a write to a copy (x * 2, then in place) does not.
// batch_norm(input, weight, bias, mean, var, training, momentum, eps, cudnn): with training set, a [batch,
// channels] input has one value per channel and sample, so a share needs 2 samples; [batch, channels, 4]
// has 4 and one sample will do; in eval mode (running statistics) any share will.
TEST(Parallelism, BatchNormOfOneValuePerChannelInTrainingNeedsTwoSamples) {
  const auto with_batch_norm = [](std::vector<int64_t> shape, bool training) {
    Graph g;
    const ValueId x = input(g, shape);
    const std::vector<int64_t> channels{shape[1]};
    op(g, "aten::batch_norm",
       {x, parameter(g, "w", channels), parameter(g, "b", channels), none(g), none(g), flag(g, training),
        int_constant(g, "0.1"), int_constant(g, "1e-05"), flag(g, true)},
       shape);
    return min_samples_per_share(g);
  };
  EXPECT_EQ(with_batch_norm({8, 32}, true), 2);
  EXPECT_EQ(with_batch_norm({8, 32, 4}, true), 1);
  EXPECT_EQ(with_batch_norm({8, 32}, false), 1);
}

TEST(Parallelism, InputsWrittenThroughAView) {
  Graph g;
  const ValueId x = input(g, {8, 16}, "x");
  const ValueId doubled = op(g, "aten::mul", {x, int_constant(g, "2")}, {8, 16});
  const ValueId row = op(g, "aten::select", {doubled, int_constant(g, "0"), int_constant(g, "0")}, {16});
  op(g, "aten::mul_", {row, int_constant(g, "3")}, {16});
  EXPECT_EQ(inputs_written_in_place(g), (std::vector<bool>{false}));
  const ValueId all =
      op(g, "aten::slice", {x, int_constant(g, "0"), none(g), none(g), int_constant(g, "1")}, {8, 16});
  const ValueId head =
      op(g, "aten::slice", {all, int_constant(g, "1"), none(g), int_constant(g, "4"), int_constant(g, "1")},
         {8, 4});
  op(g, "aten::mul_", {head, int_constant(g, "2")}, {8, 4});
  EXPECT_EQ(inputs_written_in_place(g), (std::vector<bool>{true}));
}

// An in-place op returns its first argument: x.mul_(2).add_(1) writes x twice, and the add_'s output is x.
TEST(Parallelism, AnInPlaceOpsOutputSharesItsFirstArgumentsStorage) {
  Graph g;
  const ValueId x = input(g, {8, 16}, "x");
  const ValueId twice = op(g, "aten::mul_", {x, int_constant(g, "2")}, {8, 16});
  const ValueId plus = op(g, "aten::add_", {twice, int_constant(g, "1"), int_constant(g, "1")}, {8, 16});
  const ValueId copy = op(g, "aten::mul", {plus, int_constant(g, "2")}, {8, 16});
  const std::vector<ValueId> root = storage_roots(g);
  EXPECT_EQ(root[twice], x);
  EXPECT_EQ(root[plus], x);
  EXPECT_EQ(root[copy], copy);
}

TEST(Parallelism, ReductionsOverTheBatch) {
  Graph g;
  const ValueId x = input(g, {8, 16});
  const ValueId f = flag(g, false);
  op(g, "aten::mean", {x, none(g)}, {});  // all dims
  EXPECT_FALSE(last(g).batch_splittable);
  op(g, "aten::mean", {x, list_constant(g, "[1]"), f, none(g)}, {8});
  EXPECT_TRUE(last(g).batch_splittable) << last(g).reason;
  op(g, "aten::sum", {x, list_constant(g, "[0]"), f, none(g)}, {16});
  EXPECT_FALSE(last(g).batch_splittable);
  op(g, "aten::sum", {x, list_constant(g, "[-2]"), f, none(g)}, {16});  // -2 is dim 0 of a 2-D tensor
  EXPECT_FALSE(last(g).batch_splittable);
  op(g, "aten::softmax", {x, int_constant(g, "0"), none(g)}, {8, 16});
  EXPECT_FALSE(last(g).batch_splittable);
  op(g, "aten::max", {x, x}, {8, 16});  // elementwise overload
  EXPECT_TRUE(last(g).batch_splittable);
  const ValueId dim = g.add_input("dim", ValueKind::kList);
  op(g, "aten::sum", {x, dim, f, none(g)}, {16});
  EXPECT_FALSE(last(g).batch_splittable);
  EXPECT_TRUE(last(g).suspect);
  // Norms along a dim, dim 0 the batch (they were not known here: only the run check caught dim 0).
  op(g, "aten::frobenius_norm", {x, list_constant(g, "[1]"), f}, {8});
  EXPECT_TRUE(last(g).batch_splittable) << last(g).reason;
  op(g, "aten::frobenius_norm", {x, list_constant(g, "[0]"), f}, {16});
  EXPECT_FALSE(last(g).batch_splittable);
  op(g, "aten::linalg_vector_norm", {x, int_constant(g, "2"), list_constant(g, "[0]"), f, none(g)}, {16});
  EXPECT_FALSE(last(g).batch_splittable);
  op(g, "aten::linalg_vector_norm", {x, int_constant(g, "2"), none(g), f, none(g)}, {});
  EXPECT_FALSE(last(g).batch_splittable);
  // Reductions of a weight do not involve the batch.
  op(g, "aten::sum", {parameter(g, "w", {4}), none(g)}, {});
  EXPECT_TRUE(last(g).batch_splittable);
}

TEST(Parallelism, ConstantViewShapesAreSuspect) {
  Graph g;
  const ValueId x = input(g, {8, 4, 4});
  op(g, "aten::view", {x, list_constant(g, "[8, 16]")}, {8, 16});
  NodeParallelism p = last(g);
  EXPECT_FALSE(p.batch_splittable);
  EXPECT_TRUE(p.suspect);
  EXPECT_NE(p.reason.find("[8, 16]"), std::string::npos) << p.reason;
  op(g, "aten::reshape", {x, list_constant(g, "[-1, 16]")}, {8, 16});
  EXPECT_TRUE(last(g).batch_splittable);
  const ValueId n = g.add_value(ValueKind::kScalar, "n");
  g.add_node("aten::size", {x, int_constant(g, "0")}, {n});
  const ValueId shape = g.add_value(ValueKind::kList, "");
  g.add_node("prim::ListConstruct", {n, int_constant(g, "16")}, {shape});
  op(g, "aten::view", {x, shape}, {8, 16});  // dynamic batch: fine
  EXPECT_TRUE(last(g).batch_splittable);
  op(g, "aten::view", {parameter(g, "pos", {16}), list_constant(g, "[1, 16]")}, {1, 16});
  EXPECT_TRUE(last(g).batch_splittable);
}

TEST(Parallelism, SelectAndSliceOnTheBatchDim) {
  Graph g;
  const ValueId x = input(g, {8, 4});
  const ValueId zero = int_constant(g, "0");
  const ValueId one = int_constant(g, "1");
  op(g, "aten::select", {x, zero, zero}, {4});
  EXPECT_FALSE(last(g).batch_splittable);
  op(g, "aten::select", {x, one, zero}, {8});
  EXPECT_TRUE(last(g).batch_splittable);
  op(g, "aten::slice", {x, zero, zero, int_constant(g, "9223372036854775807"), one}, {8, 4});
  EXPECT_TRUE(last(g).batch_splittable) << last(g).reason;
  op(g, "aten::slice", {x, zero, zero, int_constant(g, "4"), one}, {4, 4});
  EXPECT_FALSE(last(g).batch_splittable);
  op(g, "aten::slice", {x, one, zero, int_constant(g, "2"), one}, {8, 2});
  EXPECT_TRUE(last(g).batch_splittable);
}

// x [8, 16] -> n0 linear -> h [8, 32] -> n1 size(h, 0) -> b (the batch as a number) -> n2 view(h, [b, 4, 8])
// -> v [8, 4, 8] -> n3 transpose(0, 1) -> t [4, 8, 8] (batch in dimension 1) -> n4 transpose back -> y [8, 4,
// 8]; w2 [32] -> n5 mul(w2, 2) -> s [32] (weights only) -> n6 add(y, s) -> o.
TEST(Parallelism, HybridCutsCarryOnlyBatchMajorOrBatchFreeValues) {
  Graph g;
  const ValueId x = input(g, {8, 16});
  const ValueId h = op(g, "aten::linear", {x, parameter(g, "w", {32, 16})}, {8, 32});
  const ValueId b = g.add_value(ValueKind::kScalar, "b");
  g.add_node("aten::size", {h, int_constant(g, "0")}, {b});
  const ValueId v = op(g, "aten::view", {h, b}, {8, 4, 8});
  const ValueId t = op(g, "aten::transpose", {v, int_constant(g, "0"), int_constant(g, "1")}, {4, 8, 8});
  const ValueId y = op(g, "aten::transpose", {t, int_constant(g, "0"), int_constant(g, "1")}, {8, 4, 8});
  const ValueId sc = op(g, "aten::mul", {parameter(g, "w2", {8}), int_constant(g, "2")}, {8});
  g.set_outputs({op(g, "aten::add", {y, sc}, {8, 4, 8})});
  const std::vector<bool> crossable = hybrid_crossable(g), major = batch_major(g);
  EXPECT_TRUE(major[h] && crossable[h]);
  EXPECT_FALSE(crossable[b]) << "the batch size as a number";
  EXPECT_FALSE(major[t] || crossable[t]) << "the batch in dimension 1";
  EXPECT_TRUE(crossable[sc] && !major[sc]) << "computed from weights alone: the same on every device";
  // Cuts after n0 (h crosses, and the view needs it) and after n1 (b and h cross); after n2 v; after n3 t;
  // after n4 y (and s is computed later); after n5 y and s; n6 is the end.
  EXPECT_EQ(hybrid_cuts(g), (std::vector<bool>{true, false, true, false, true, true, true}));
  // Between processes only lists and tuples cannot cross: every cut of this graph can.
  EXPECT_EQ(process_cuts(g), std::vector<bool>(7, true));
}

// forward(m, x) with a shared first input m [16, 16] (no batch) and x [8, 16]: the batch is x's 8, so h = x @
// m [8, 16] is batch-major and m @ m [16, 16] is batch-free, though its dim 0 is m's.
TEST(Parallelism, TheBatchComesFromTheFirstInputThatIsNotShared) {
  Graph g;
  const ValueId m = input(g, {16, 16}, "m");
  g.value(m).shared = true;
  const ValueId x = input(g, {8, 16});
  EXPECT_EQ(g.batch_input_index(), 1);
  const ValueId h = op(g, "aten::matmul", {x, m}, {8, 16});
  const ValueId mm = op(g, "aten::matmul", {m, m}, {16, 16});
  g.set_outputs({op(g, "aten::matmul", {h, mm}, {8, 16})});
  const std::vector<bool> dep = batch_dependent(g), major = batch_major(g);
  EXPECT_TRUE(dep[h] && major[h]) << "x's rows";
  EXPECT_FALSE(dep[mm] || major[mm]) << "computed from the shared input alone";
  EXPECT_TRUE(major[g.outputs()[0]]);
  g.value(x).shared = true;
  EXPECT_EQ(g.batch_input_index(), -1) << "every input shared";
}

// A list crossing a cut (aten::split's output, read by two later nodes) keeps processes from cutting there.
TEST(Parallelism, ProcessCutsAvoidListsAndTuples) {
  Graph g;
  const ValueId x = input(g, {8, 16});
  const ValueId h = op(g, "aten::linear", {x, parameter(g, "w", {32, 16})}, {8, 32});
  const ValueId parts = g.add_value(ValueKind::kList, "parts");
  g.add_node("aten::split", {h, int_constant(g, "16"), int_constant(g, "1")}, {parts});
  const ValueId a = op(g, "aten::__getitem__", {parts, int_constant(g, "0")}, {8, 16});
  const ValueId b = op(g, "aten::__getitem__", {parts, int_constant(g, "1")}, {8, 16});
  g.set_outputs({op(g, "aten::add", {a, b}, {8, 16})});
  // After n1 (the split) and n2 (the first getitem) the list crosses.
  EXPECT_EQ(process_cuts(g), (std::vector<bool>{true, false, false, true, true}));
}

// x[:, :8].mul_(0.5); head(x): a cut between the slice (n1) and the write (n3) would leave the later stage
// writing its copy of the view and reading its own unwritten copy of x; after the write it may cut. Without a
// later reader of x (only the view is used on), every cut is allowed.
TEST(Parallelism, ACutMayNotSeparateAnInputViewFromItsWriteWhileTheInputIsReadLater) {
  const auto build = [](bool x_read_after_the_write) {
    Graph g;
    const ValueId x = input(g, {8, 16}, "x");
    const ValueId w = parameter(g, "w", {16, 16});
    const ValueId other = op(g, "aten::relu", {x}, {8, 16});  // n0
    const ValueId view =
        op(g, "aten::slice", {x, int_constant(g, "1"), none(g), int_constant(g, "8"), int_constant(g, "1")},
           {8, 8});                                                                                 // n1
    const ValueId other2 = op(g, "aten::tanh", {other}, {8, 16});                                   // n2
    const ValueId written = op(g, "aten::mul_", {view, int_constant(g, "0.5")}, {8, 8});            // n3
    const ValueId read = op(g, "aten::linear", {x_read_after_the_write ? x : other2, w}, {8, 16});  // n4
    g.set_outputs({read, op(g, "aten::sum", {written}, {})});                                       // n5
    return g;
  };
  const Graph reads_x = build(true);
  EXPECT_EQ(storage_write_cuts(reads_x), (std::vector<bool>{true, false, false, true, true, true}));
  EXPECT_EQ(process_cuts(reads_x), (std::vector<bool>{true, false, false, true, true, true}));
  EXPECT_FALSE(hybrid_cuts(reads_x)[1] || hybrid_cuts(reads_x)[2]);
  EXPECT_EQ(storage_write_cuts(build(false)), std::vector<bool>(6, true));
}

// z = x.new_zeros(8, 32); z[:, :16] = a; z[:, 16:] = b; head(z): z's storage is written twice through slices,
// and the head reads z itself, ordered after the writes only by node order.
TEST(Parallelism, ASliceAssignedBufferKeepsItsViewsWithTheWritesAndTheHeadWithTheirStorage) {
  Graph g;
  const ValueId x = input(g, {8, 16}, "x");
  const ValueId z = op(g, "aten::new_zeros", {x}, {8, 32});                            // n0
  const ValueId a = op(g, "aten::linear", {x, parameter(g, "w", {16, 16})}, {8, 16});  // n1
  const ValueId left = op(g, "aten::slice", {z}, {8, 16});                             // n2
  const ValueId copied = op(g, "aten::copy_", {left, a}, {8, 16});                     // n3
  const ValueId b = op(g, "aten::flip", {x}, {8, 16});                                 // n4
  const ValueId right = op(g, "aten::slice", {z}, {8, 16});                            // n5
  const ValueId copied2 = op(g, "aten::copy_", {right, b}, {8, 16});                   // n6
  g.set_outputs({op(g, "aten::linear", {z, parameter(g, "head", {4, 32})}, {8, 4})});  // n7
  const std::vector<WrittenStorage> written = written_storages(g);
  ASSERT_EQ(written.size(), 1u);
  EXPECT_EQ(written[0].root, z);
  EXPECT_EQ(written[0].members, (std::vector<ValueId>{z, left, copied, right, copied2}));
  EXPECT_EQ(written[0].writes, (std::vector<NodeId>{3, 6}));
  // A stage starting after n2 would receive the slice and z apart; after n1, z alone (it makes its slices).
  EXPECT_EQ(copies_across_cut(g, written[0], 2), (std::vector<ValueId>{z, left}));
  EXPECT_EQ(copies_across_cut(g, written[0], 1), (std::vector<ValueId>{z}));
  EXPECT_EQ(copies_across_cut(g, written[0], 6), (std::vector<ValueId>{z}));
  EXPECT_EQ(storage_write_cuts(g), (std::vector<bool>{true, true, false, true, true, false, true, true}));
  EXPECT_EQ(process_cuts(g), storage_write_cuts(g));
  // The second slice reads z, made before the first write, after it (and so does the head).
  EXPECT_EQ(first_read_seeing_a_write(g), 5);
}

// x = relu(conv(x), inplace=True) feeding two branches: every reader after the write reads the in-place op's
// output, so nothing must stay with the write, and every cut is allowed (one copy crosses each).
TEST(Parallelism, AnInPlaceActivationAtAForkConstrainsNothing) {
  Graph g;
  const ValueId x = input(g, {8, 16}, "x");
  const ValueId h = op(g, "aten::linear", {x, parameter(g, "w", {16, 16})}, {8, 16});  // n0
  const ValueId r = op(g, "aten::relu_", {h}, {8, 16});                                // n1
  const ValueId a = op(g, "aten::tanh", {r}, {8, 16});                                 // n2
  const ValueId b = op(g, "aten::sigmoid", {r}, {8, 16});                              // n3
  g.set_outputs({op(g, "aten::add", {a, b}, {8, 16})});                                // n4
  const std::vector<WrittenStorage> written = written_storages(g);
  ASSERT_EQ(written.size(), 1u);
  EXPECT_EQ(written[0].members, (std::vector<ValueId>{h, r}));
  EXPECT_EQ(first_read_seeing_a_write(g), kNoNode);
  EXPECT_EQ(storage_write_cuts(g), std::vector<bool>(5, true));
}

}  // namespace
}  // namespace partita

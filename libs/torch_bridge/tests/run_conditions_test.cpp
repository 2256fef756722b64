#include "partita/torch_bridge/run_conditions.h"

#include <gtest/gtest.h>

#include <torch/csrc/jit/ir/irparser.h>
#include <torch/csrc/jit/runtime/interpreter.h>

namespace partita {

namespace {

namespace jit = torch::jit;

std::shared_ptr<jit::Graph> parse(const std::string& ir) {
  auto g = std::make_shared<jit::Graph>();
  jit::parseIR(ir, g.get());
  return g;
}

// How many nodes of `kind` are left anywhere in the graph; no probe is left.
int nodes_of(const jit::Graph& g, c10::Symbol kind) {
  int count = 0;
  std::vector<const jit::Block*> blocks{g.block()};
  while (!blocks.empty()) {
    const jit::Block* b = blocks.back();
    blocks.pop_back();
    for (const jit::Node* n : b->nodes()) {
      count += n->kind() == kind;
      const std::string name = n->kind().toQualString();
      EXPECT_TRUE(name != "partita::probe" && name != "partita::probe_count") << name;
      for (const jit::Block* inner : n->blocks()) blocks.push_back(inner);
    }
  }
  return count;
}

// How many prim::If nodes are left anywhere in the graph.
int branches(const jit::Graph& g) { return nodes_of(g, c10::prim::If); }

// Folds and returns the If nodes left; the graph's result is checked against the graph before folding, on
// the same input.
int fold_and_count(const std::string& ir, const at::Tensor& x, ModuleMode mode, int want_folded,
                   int want_runs = -1) {
  const auto g = parse(ir);
  const auto before = g->copy();
  const RunConditionFolds folds = fold_run_conditions(g, {x}, mode);
  EXPECT_EQ(folds.folded, want_folded) << ir;
  if (want_runs >= 0) {
    EXPECT_EQ(folds.runs, want_runs) << ir;
  }
  const auto run = [&](const std::shared_ptr<jit::Graph>& graph) {
    jit::Stack stack{x};
    jit::InterpreterState(jit::Code(graph, "test")).run(stack);
    return stack.at(0).toTensor();
  };
  const torch::AutoGradMode grad(mode == ModuleMode::kTrain);
  EXPECT_TRUE(torch::equal(run(g), run(before)));
  return branches(*g);
}

// A branch on the input's rank, as multi-head attention's `is_batched = query.dim() == 3`.
constexpr const char* kRank = R"IR(
graph(%x : Tensor):
  %zero : int = prim::Constant[value=0]()
  %three : int = prim::Constant[value=3]()
  %d : int = aten::dim(%x)
  %batched : bool = aten::eq(%d, %three)
  %y : Tensor = prim::If(%batched)
    block0():
      -> (%x)
    block1():
      %u : Tensor = aten::unsqueeze(%x, %zero)
      -> (%u)
  return (%y))IR";

}  // namespace

TEST(RunConditions, ABranchOnARankFoldsToTheSideTheExampleTook) {
  EXPECT_EQ(fold_and_count(kRank, torch::randn({2, 3, 4}), ModuleMode::kEval, 1), 0);
  EXPECT_EQ(fold_and_count(kRank, torch::randn({3, 4}), ModuleMode::kEval, 1), 0);
}

// What a shape check returns (`is_batched` of multi-head attention's _mha_shape_check, whose other side
// raises and leaves prim::Uninitialized) is known in the same run as the check: both branches fold from one
// run, not one per round.
TEST(RunConditions, AResultOfACheckThatCanRaiseFoldsInTheSameRun) {
  constexpr const char* checked = R"IR(
graph(%x : Tensor):
  %zero : int = prim::Constant[value=0]()
  %two : int = prim::Constant[value=2]()
  %three : int = prim::Constant[value=3]()
  %true : bool = prim::Constant[value=1]()
  %false : bool = prim::Constant[value=0]()
  %message : str = prim::Constant[value="query should be unbatched 2D or batched 3D tensor"]()
  %kind : str = prim::Constant[value="builtins.AssertionError"]()
  %d : int = aten::dim(%x)
  %is3 : bool = aten::eq(%d, %three)
  %batched : bool = prim::If(%is3)
    block0():
      -> (%true)
    block1():
      %is2 : bool = aten::eq(%d, %two)
      %unbatched : bool = prim::If(%is2)
        block0():
          -> (%false)
        block1():
          prim::RaiseException(%message, %kind)
          %never : bool = prim::Uninitialized()
          -> (%never)
      -> (%unbatched)
  %add_batch : bool = aten::__not__(%batched)
  %y : Tensor = prim::If(%add_batch)
    block0():
      %u : Tensor = aten::unsqueeze(%x, %zero)
      -> (%u)
    block1():
      -> (%x)
  return (%y))IR";
  // One run folds them all; the second finds nothing left to probe and does not run.
  EXPECT_EQ(fold_and_count(checked, torch::randn({2, 3, 4}), ModuleMode::kEval, 2, 1), 0);
  EXPECT_EQ(fold_and_count(checked, torch::randn({3, 4}), ModuleMode::kEval, 3, 1), 0);
}

// The sizes change with the batch, and the values with every input: a branch on either stays.
TEST(RunConditions, ABranchOnASizeOrOnValuesStays) {
  constexpr const char* size = R"IR(
graph(%x : Tensor):
  %zero : int = prim::Constant[value=0]()
  %one : int = prim::Constant[value=1]()
  %n : int = aten::size(%x, %zero)
  %single : bool = aten::eq(%n, %one)
  %y : Tensor = prim::If(%single)
    block0():
      %s : Tensor = aten::squeeze(%x, %zero)
      -> (%s)
    block1():
      -> (%x)
  return (%y))IR";
  EXPECT_EQ(fold_and_count(size, torch::randn({1, 4}), ModuleMode::kEval, 0), 1);
  constexpr const char* values = R"IR(
graph(%x : Tensor):
  %none : NoneType = prim::Constant()
  %s : Tensor = aten::sum(%x, %none)
  %positive : bool = aten::Bool(%s)
  %y : Tensor = prim::If(%positive)
    block0():
      %n : Tensor = aten::neg(%x)
      -> (%n)
    block1():
      -> (%x)
  return (%y))IR";
  EXPECT_EQ(fold_and_count(values, torch::ones({2, 4}), ModuleMode::kEval, 0), 1);
}

// torch.nn's fast-path test: grad mode (on in training, off in inference) and whether every tensor is on a
// supported device, gathered in a list that `all` reads.
TEST(RunConditions, GradModeAndAListOfDeviceTestsFoldAsTheModeSays) {
  constexpr const char* fast_path = R"IR(
graph(%x : Tensor):
  %false : bool = prim::Constant[value=0]()
  %grad : bool = aten::is_grad_enabled()
  %autocast : bool = aten::is_autocast_enabled()
  %checks : bool[] = prim::ListConstruct()
  %cuda : bool = prim::is_cuda(%x)
  %nested : bool = prim::is_nested(%x)
  %plain : bool = aten::__not__(%nested)
  %a : bool[] = aten::append(%checks, %plain)
  %b : bool[] = aten::append(%checks, %cuda)
  %any_device : bool = aten::any(%checks)
  %no_autocast : bool = aten::__not__(%autocast)
  %fast : bool = aten::__and__(%any_device, %no_autocast)
  %y : Tensor = prim::If(%grad)
    block0():
      %r : Tensor = aten::relu(%x)
      -> (%r)
    block1():
      %z : Tensor = prim::If(%fast)
        block0():
          %t : Tensor = aten::tanh(%x)
          -> (%t)
        block1():
          -> (%x)
      -> (%z)
  return (%y))IR";
  // Training: the grad branch; the inner test never ran, and it goes with the branch not taken.
  EXPECT_EQ(fold_and_count(fast_path, torch::randn({2, 4}), ModuleMode::kTrain, 1), 0);
  // Inference: both fold (the device list says: not nested, on the CPU).
  EXPECT_EQ(fold_and_count(fast_path, torch::randn({2, 4}), ModuleMode::kEval, 2), 0);
}

// A list that something other than an append writes (here insert) is not known from its appends: not folded.
TEST(RunConditions, AListWrittenOtherwiseThanByAppendStays) {
  constexpr const char* inserted = R"IR(
graph(%x : Tensor):
  %zero : int = prim::Constant[value=0]()
  %true : bool = prim::Constant[value=1]()
  %checks : bool[] = prim::ListConstruct()
  %cuda : bool = prim::is_cuda(%x)
  %a : bool[] = aten::append(%checks, %cuda)
  aten::insert(%checks, %zero, %true)
  %any : bool = aten::any(%checks)
  %y : Tensor = prim::If(%any)
    block0():
      %n : Tensor = aten::neg(%x)
      -> (%n)
    block1():
      -> (%x)
  return (%y))IR";
  EXPECT_EQ(fold_and_count(inserted, torch::randn({2, 4}), ModuleMode::kEval, 0), 1);
  // Nor one appended to in a branch on the data: what it holds depends on that branch.
  constexpr const char* appended_in_branch = R"IR(
graph(%x : Tensor):
  %none : NoneType = prim::Constant()
  %checks : bool[] = prim::ListConstruct()
  %cuda : bool = prim::is_cuda(%x)
  %s : Tensor = aten::sum(%x, %none)
  %positive : bool = aten::Bool(%s)
  prim::If(%positive)
    block0():
      %a : bool[] = aten::append(%checks, %cuda)
      -> ()
    block1():
      -> ()
  %n : int = aten::len(%checks)
  %zero : int = prim::Constant[value=0]()
  %some : bool = aten::gt(%n, %zero)
  %y : Tensor = prim::If(%some)
    block0():
      %r : Tensor = aten::neg(%x)
      -> (%r)
    block1():
      -> (%x)
  return (%y))IR";
  EXPECT_EQ(fold_and_count(appended_in_branch, torch::ones({2, 4}), ModuleMode::kEval, 0), 2);
}

// A condition inside a loop that takes both values (the rank grows each iteration) is left as it is.
TEST(RunConditions, AConditionThatTookBothValuesStays) {
  constexpr const char* growing = R"IR(
graph(%x : Tensor):
  %zero : int = prim::Constant[value=0]()
  %two : int = prim::Constant[value=2]()
  %three : int = prim::Constant[value=3]()
  %true : bool = prim::Constant[value=1]()
  %y : Tensor = prim::Loop(%two, %true, %x)
    block0(%i : int, %t : Tensor):
      %d : int = aten::dim(%t)
      %small : bool = aten::lt(%d, %three)
      %next : Tensor = prim::If(%small)
        block0():
          %u : Tensor = aten::unsqueeze(%t, %zero)
          -> (%u)
        block1():
          %r : Tensor = aten::relu(%t)
          -> (%r)
      -> (%true, %next)
  return (%y))IR";
  EXPECT_EQ(fold_and_count(growing, torch::randn({2, 4}), ModuleMode::kEval, 0), 1);
}

// What the graph throws on the example reaches the caller, and the graph is left without probes.
TEST(RunConditions, TheGraphsOwnErrorReachesTheCallerAndNoProbeStays) {
  constexpr const char* refuses = R"IR(
graph(%x : Tensor):
  %four : int = prim::Constant[value=4]()
  %message : str = prim::Constant[value="expects a 4-d input"]()
  %kind : str = prim::Constant[value="builtins.ValueError"]()
  %d : int = aten::dim(%x)
  %wrong : bool = aten::ne(%d, %four)
  %y : Tensor = prim::If(%wrong)
    block0():
      prim::RaiseException(%message, %kind)
      %never : Tensor = prim::Uninitialized()
      -> (%never)
    block1():
      -> (%x)
  return (%y))IR";
  const auto g = parse(refuses);
  try {
    fold_run_conditions(g, {torch::randn({2, 4})}, ModuleMode::kEval);
    FAIL() << "ran";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("expects a 4-d input"), std::string::npos) << e.what();
  }
  EXPECT_EQ(branches(*g), 1);
  EXPECT_EQ(fold_run_conditions(g, {torch::randn({2, 3, 4, 4})}, ModuleMode::kEval).folded, 1);
  EXPECT_EQ(branches(*g), 0);  // the check went: the example passed it
}

// A loop over the input's spatial dimensions (F.interpolate's `[scale for _ in range(dim)]`, dim =
// input.dim() - 2): its count is fixed by the run like a rank condition, so it folds and the loop unrolls, as
// a trace records it; a loop over a size (which changes with the batch) stays.
TEST(RunConditions, ALoopCountFromARankFoldsAndTheLoopUnrolls) {
  constexpr const char* spatial = R"IR(
graph(%x : Tensor):
  %one : int = prim::Constant[value=1]()
  %two : int = prim::Constant[value=2]()
  %true : bool = prim::Constant[value=1]()
  %d : int = aten::dim(%x)
  %n : int = aten::sub(%d, %two)
  %y : Tensor = prim::Loop(%n, %true, %x)
    block0(%i : int, %t : Tensor):
      %s : Tensor = aten::add(%t, %i, %one)
      -> (%true, %s)
  return (%y))IR";
  for (const auto& shape : {std::vector<int64_t>{2, 3, 4, 4}, std::vector<int64_t>{2, 3, 4}}) {
    const torch::Tensor x = torch::randn(shape);
    const auto g = parse(spatial);
    const RunConditionFolds folds = fold_run_conditions(g, {x}, ModuleMode::kEval);
    EXPECT_EQ(folds.loop_counts, 1);
    EXPECT_EQ(folds.folded, 0);
    EXPECT_EQ(nodes_of(*g, c10::prim::Loop), 0) << *g;
    jit::Stack stack{x};
    jit::InterpreterState(jit::Code(g, "test")).run(stack);
    const int64_t spatial_dims = x.dim() - 2;  // adds 0, 1, ...
    EXPECT_TRUE(torch::equal(stack.at(0).toTensor(), x + spatial_dims * (spatial_dims - 1) / 2));
  }
  constexpr const char* by_size = R"IR(
graph(%x : Tensor):
  %zero : int = prim::Constant[value=0]()
  %one : int = prim::Constant[value=1]()
  %true : bool = prim::Constant[value=1]()
  %n : int = aten::size(%x, %zero)
  %y : Tensor = prim::Loop(%n, %true, %x)
    block0(%i : int, %t : Tensor):
      %s : Tensor = aten::add(%t, %i, %one)
      -> (%true, %s)
  return (%y))IR";
  const auto g = parse(by_size);
  const RunConditionFolds folds = fold_run_conditions(g, {torch::randn({3, 4})}, ModuleMode::kEval);
  EXPECT_EQ(folds.loop_counts, 0);
  EXPECT_EQ(folds.runs, 0);
  EXPECT_EQ(nodes_of(*g, c10::prim::Loop), 1);
}

}  // namespace partita

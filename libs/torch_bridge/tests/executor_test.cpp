#include "partita/torch_bridge/executor.h"

#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/jit/runtime/print_handler.h>

#include <filesystem>

#include "partita/core/error.h"
#include "zoo.h"

namespace partita {

namespace {

struct Case {
  const char* model;
  const char* input;
};

class ExecutorZoo : public ::testing::TestWithParam<Case> {};

torch::Tensor first_tensor(const c10::IValue& iv) {
  return iv.isTuple() ? iv.toTupleRef().elements()[0].toTensor() : iv.toTensor();
}

class CountingObserver : public ExecutionObserver {
 public:
  void on_node_begin(const Node& n) override { begun.push_back(n.id); }
  void on_node_end(const Node& n, c10::ArrayRef<c10::IValue> outputs) override {
    ended.push_back(n.id);
    EXPECT_EQ(outputs.size(), n.outputs.size());
  }
  std::vector<NodeId> begun, ended;
};

}  // namespace

TEST_P(ExecutorZoo, ForwardAndGradientsMatchTorchScriptExactly) {
  const Case c = GetParam();
  LoadedModel m = load_model(testing::zoo_model(c.model));
  const auto specs = std::vector<InputSpec>{parse_input_spec(c.input)};
  annotate_shapes(m, specs);
  const Executor ex(m);
  const auto tensors = make_inputs(specs, 3);
  const std::vector<c10::IValue> inputs(tensors.begin(), tensors.end());

  const torch::Tensor ref = first_tensor(m.module.forward(inputs));
  (ref.to(torch::kDouble) * ref.to(torch::kDouble).detach().cos()).sum().backward();
  std::vector<torch::Tensor> ref_grads;
  for (auto& p : m.parameters) {
    if (!p.requires_grad()) continue;
    ref_grads.push_back(p.grad().clone());
    p.mutable_grad().zero_();
  }
  CountingObserver obs;
  const torch::Tensor ours = first_tensor(ex.run(inputs, &obs)[0]);
  EXPECT_TRUE(torch::equal(ours, ref)) << c.model;
  EXPECT_EQ(static_cast<int>(obs.begun.size()), m.ir.num_nodes());
  EXPECT_EQ(obs.begun, obs.ended);
  (ours.to(torch::kDouble) * ours.to(torch::kDouble).detach().cos()).sum().backward();
  size_t k = 0;
  for (auto& p : m.parameters) {
    if (!p.requires_grad()) continue;
    ASSERT_TRUE(p.grad().defined());
    EXPECT_TRUE(torch::allclose(p.grad(), ref_grads[k], 1e-5, 1e-6)) << c.model << " param " << k;
    ++k;
  }
  EXPECT_GT(k, 0u);
}

INSTANTIATE_TEST_SUITE_P(Zoo, ExecutorZoo,
                         ::testing::Values(Case{"mlp", "4x64"}, Case{"cnn", "2x3x32x32"},
                                           Case{"cnn_train", "2x3x32x32"}, Case{"branchy", "2x3x32x32"},
                                           Case{"gpt", "2x16:i64:2048"}),
                         [](const auto& param_info) { return std::string(param_info.param.model); });

namespace {

// A zoo model, example inputs, and its TorchScript output drawn from the default generator seeded `seed`
// (checked to depend on the seed: the model draws).
struct SeededForward {
  LoadedModel model;
  std::vector<c10::IValue> inputs;
  torch::Tensor torchscript;
};
SeededForward seeded_forward(const char* name, const char* input, uint64_t seed) {
  SeededForward r{load_model(testing::zoo_model(name)), {}, {}};
  const std::vector<InputSpec> specs{parse_input_spec(input)};
  annotate_shapes(r.model, specs);
  for (const auto& t : make_inputs(specs, 3)) r.inputs.emplace_back(t);
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  r.torchscript = r.model.module.forward(r.inputs).toTensor();
  torch::manual_seed(seed + 1);
  EXPECT_FALSE(torch::equal(r.model.module.forward(r.inputs).toTensor(), r.torchscript))
      << name << ": another seed draws the same";
  torch::manual_seed(99);  // the executor's draws must not come from the default generator
  return r;
}

}  // namespace

// With a generator of its own, the executor draws what TorchScript draws from the default generator in the
// same state, bit for bit: dropout masks of every kind (partita runs dropout as ATen defines it, with masks
// from that generator), randn_like, rand_like and randn noise, bernoulli units. The default generator's state
// then does not matter, and each run draws on. As in eval without draws, every run gives the same output.
TEST(Executor, DrawsFromItsOwnGeneratorWhatTorchScriptDrawsFromTheDefaultOne) {
  const SeededForward f = seeded_forward("stochastic", "8x32", 5);
  torch::NoGradGuard no_grad;
  ExecutorOptions own;
  own.generator = at::make_generator<at::CPUGeneratorImpl>(5);
  const Executor ex(f.model, own);
  EXPECT_TRUE(torch::equal(ex.run(f.inputs)[0].toTensor(), f.torchscript));
  EXPECT_FALSE(torch::equal(ex.run(f.inputs)[0].toTensor(), f.torchscript));  // the next run draws on
  own.generator.set_current_seed(5);  // the executor's generator is this one
  EXPECT_TRUE(torch::equal(ex.run(f.inputs)[0].toTensor(), f.torchscript));

  ExecutorOptions eval;
  eval.as_in_eval_without_draws = true;
  const Executor deterministic(f.model, eval);
  const torch::Tensor first = deterministic.run(f.inputs)[0].toTensor();
  EXPECT_TRUE(torch::equal(deterministic.run(f.inputs)[0].toTensor(), first));
  EXPECT_FALSE(torch::equal(first, f.torchscript));
}

// Integer draws too: shuffled_batch's randperm, randint and randint_like come from the executor's generator,
// as TorchScript draws them from the default one in the same state.
TEST(Executor, IntegerDrawsComeFromItsOwnGeneratorToo) {
  const SeededForward f = seeded_forward("shuffled_batch", "8x16", 5);
  torch::NoGradGuard no_grad;
  ExecutorOptions own;
  own.generator = at::make_generator<at::CPUGeneratorImpl>(5);
  EXPECT_TRUE(torch::equal(Executor(f.model, own).run(f.inputs)[0].toTensor(), f.torchscript));
}

TEST(Executor, NodeRangesComposeToTheWholeGraph) {
  LoadedModel m = load_model(testing::zoo_model("branchy"));
  const std::vector<InputSpec> specs{parse_input_spec("2x3x32x32")};
  annotate_shapes(m, specs);
  const Executor ex(m);
  torch::NoGradGuard no_grad;
  const auto tensors = make_inputs(specs, 5);
  const std::vector<c10::IValue> inputs(tensors.begin(), tensors.end());
  const torch::Tensor whole = ex.run(inputs)[0].toTensor();
  auto env = ex.make_environment(inputs);
  const NodeId mid = m.ir.num_nodes() / 2;
  ex.run_nodes(0, mid, env);
  ex.run_nodes(mid + 1, m.ir.num_nodes() - 1, env);
  EXPECT_TRUE(torch::equal(env[m.ir.outputs()[0]].toTensor(), whole));
}

TEST(Executor, FailingNodeIsNamed) {
  LoadedModel m = load_model(testing::zoo_model("mlp"));
  annotate_shapes(m, {parse_input_spec("4x64")});
  const Executor ex(m);
  try {
    ex.run({c10::IValue(torch::randn({4, 63}))});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("node 0 aten::linear (fc1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ex.run({}), Error);
}

// x.mul_(0.5) in forward() (x[:, :8].mul_(0.5), through a view): each run starts from the caller's values
// (the executor copies the input), so two runs give the same output, the caller's tensor is unchanged, and
// the output is TorchScript's on a copy.
TEST(Executor, AnInputTheModelWritesIsCopiedPerRun) {
  for (const char* name : {"scales_input", "scales_input_view"}) {
    LoadedModel m = load_model(testing::zoo_model(name));
    const auto specs = std::vector<InputSpec>{parse_input_spec("8x16")};
    annotate_shapes(m, specs);
    const Executor ex(m);
    const torch::Tensor x = make_inputs(specs, 3)[0];
    const torch::Tensor before = x.clone();
    torch::NoGradGuard no_grad;
    const torch::Tensor first = first_tensor(ex.run({x})[0]);
    const torch::Tensor second = first_tensor(ex.run({x})[0]);
    EXPECT_TRUE(torch::equal(x, before)) << name;
    EXPECT_TRUE(torch::equal(first, second)) << name;
    EXPECT_TRUE(torch::equal(first, first_tensor(m.module.forward({x.clone()})))) << name;
  }
}

// `0.5 * mask.long()`, `mask - 1.5`, `mask / 4` in a trace: the numbers are recorded as 0-d float64/int64
// tensors, yet TorchScript (like Python) promotes them as numbers, so the output is float32. Run as 0-d
// tensor operands, they would make it float64.
TEST(Executor, PythonNumbersInATracePromoteAsInPython) {
  LoadedModel m = load_model(testing::zoo_model("python_numbers"));
  const auto specs = std::vector<InputSpec>{parse_input_spec("8x16")};
  annotate_shapes(m, specs);
  const torch::Tensor x = make_inputs(specs, 3)[0];
  torch::NoGradGuard no_grad;
  const torch::Tensor ours = first_tensor(Executor(m).run({x})[0]);
  const torch::Tensor theirs = first_tensor(m.module.forward({x}));
  ASSERT_EQ(theirs.scalar_type(), torch::kFloat);
  EXPECT_EQ(ours.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(ours, theirs));
  const Graph& g = m.ir;
  for (const Node& n : g.nodes()) {  // the planner's dtypes agree: every tensor the graph computes is float32
    for (ValueId v : n.outputs) {    // or the int64 mask, none float64
      for (const auto& t : g.value(v).tensors) EXPECT_NE(t.dtype, DType::kFloat64) << n.op;
    }
  }
}

// A trace records the device it ran on as a constant (torch.arange(n, device=x.device)); a stage placed
// elsewhere must make such tensors on its own device. Here the recorded device is "meta" (a CPU-only machine
// has no second device): on a CPU executor the positions come out as real CPU numbers. (Tensors the import
// folded into constants are moved to the executor's device as they always were.)
TEST(Executor, DeviceConstantsNameTheExecutorsDevice) {
  const auto path = std::filesystem::temp_directory_path() / "partita_device_constant.pt";
  {
    torch::jit::Module module("Positions");
    module.define(R"JIT(
def forward(self, x):
    pos = torch.arange(x.size(1), device=torch.device("meta"))
    return x + pos.float()
)JIT");
    module.save(path.string());
  }
  LoadedModel m = load_model(path.string());
  std::filesystem::remove(path);
  const auto specs = std::vector<InputSpec>{parse_input_spec("2x4")};
  annotate_shapes(m, specs);
  const torch::Tensor x = make_inputs(specs, 5)[0];
  torch::NoGradGuard no_grad;
  const torch::Tensor out = first_tensor(Executor(m).run({x})[0]);
  ASSERT_TRUE(out.device().is_cpu()) << out.device();
  EXPECT_TRUE(torch::equal(out, x + torch::arange(4).to(torch::kFloat)));
}

// print() and str.format() take a variable number of arguments: the interpreter pushes their count after
// them, and the executor did not (a scripted model with a print() failed in an assert of LibTorch's,
// "isInt()").
std::string printed_by_model;  // what print_into_string received
void print_into_string(const std::string& text) { printed_by_model += text; }

TEST(Executor, VariableArgumentOperatorsTakeTheirArgumentCount) {
  const auto path = std::filesystem::temp_directory_path() / "partita_prints.pt";
  {
    torch::jit::Module module("Prints");
    module.define(R"JIT(
def forward(self, x):
    print("rows", x.size(0), "columns", x.size(1))
    print("{} and {}".format(x.size(0), x.size(1)))
    return x * 2
)JIT");
    module.save(path.string());
  }
  LoadedModel m = load_model(path.string());
  std::filesystem::remove(path);
  const auto specs = std::vector<InputSpec>{parse_input_spec("2x4")};
  annotate_shapes(m, specs);
  const torch::Tensor x = make_inputs(specs, 5)[0];
  const torch::jit::PrintHandler before = torch::jit::getPrintHandler();
  torch::jit::setPrintHandler(print_into_string);
  printed_by_model.clear();
  torch::NoGradGuard no_grad;
  torch::Tensor out;
  try {
    out = first_tensor(Executor(m).run({x})[0]);
  } catch (...) {
    torch::jit::setPrintHandler(before);
    throw;
  }
  torch::jit::setPrintHandler(before);
  EXPECT_EQ(printed_by_model, "rows 2 columns 4\n2 and 4\n");
  EXPECT_TRUE(torch::equal(out, x * 2));
}

}  // namespace partita

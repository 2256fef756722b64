// Branch-parallel plans in the engine (engine_branch.cpp): explicit node lists per device.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include <torch/optim.h>
#include <torch/script.h>

#include "branch_layouts.h"
#include "partita/core/error.h"
#include "partita/graph/analysis.h"
#include "partita/runtime/engine.h"
#include "partita/search/graph_identity.h"
#include "reference_training.h"

namespace partita {

namespace {

std::string zoo(const std::string& name) { return std::string(PARTITA_MODELS_DIR) + "/" + name + ".pt"; }

LoadedModel load(const std::string& path, const std::string& input) {
  LoadedModel m = load_model(path);
  annotate_shapes(m, testing::specs_of(input));
  return m;
}

// A diamond whose fork value is updated in place by one branch while the other branch reads it: the branch
// runner must hand the other device a copy taken when the value was produced.
std::string diamond_model() {
  const auto path = std::filesystem::temp_directory_path() / "partita_branch_diamond.pt";
  torch::manual_seed(3);
  torch::jit::Module m("Diamond");
  m.register_parameter("w0", (torch::randn({32, 16}) * 0.2).requires_grad_(), false);
  m.register_parameter("w1", (torch::randn({16, 4}) * 0.2).requires_grad_(), false);
  m.define(R"JIT(
def forward(self, x):
    h = torch.matmul(x, self.w0)
    a = h + 1.0
    b = torch.sigmoid(h)
    c = torch.relu_(h)
    return torch.matmul(a * b + c, self.w1)
)JIT");
  m.save(path.string());
  return path.string();
}

using testing::alternating;
using testing::branch_plan;
using testing::shuffled;

std::vector<int> by_branches(const Graph& g) { return testing::by_branches(g); }

// Plain single-device training with the TorchScript module itself (as in engine_test.cpp).
std::vector<double> reference_losses(const std::string& path, const std::string& input, int steps) {
  LoadedModel m = load(path, input);
  const int batch = static_cast<int>(spec_batch(testing::specs_of(input)));
  std::vector<int> all_on_one(static_cast<size_t>(m.ir.num_nodes()), 0);
  const Engine helper(m, branch_plan(m.ir, Mode::kTraining, batch, 1, all_on_one));
  std::vector<torch::Tensor> params;
  for (const auto& p : m.parameters) {
    if (p.requires_grad()) params.push_back(p);
  }
  torch::optim::SGD opt(params, torch::optim::SGDOptions(0.01).momentum(0.9));
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    const auto inputs = make_inputs(testing::specs_of(input), 100);
    const auto targets = helper.make_targets(inputs, 7);
    opt.zero_grad();
    const auto out = m.module.forward(std::vector<c10::IValue>(inputs.begin(), inputs.end())).toTensor();
    auto loss = slice_loss(helper.loss_kind(), out, targets, batch);
    loss.backward();
    opt.step();
    losses.push_back(loss.item<double>());
  }
  return losses;
}

std::vector<double> engine_losses(const std::string& path, const std::string& input, int steps,
                                  int microbatches,
                                  const std::function<std::vector<int>(const Graph&)>& assign) {
  LoadedModel m = load(path, input);
  const int batch = static_cast<int>(spec_batch(testing::specs_of(input)));
  Engine engine(m, branch_plan(m.ir, Mode::kTraining, batch, microbatches, assign(m.ir)));
  return testing::train_losses(engine, input, steps);
}

bool two_cores() { return std::thread::hardware_concurrency() >= 2; }

class Recorder : public RuntimeObserver {
 public:
  void on_task_end(const TaskEvent& e) override {
    std::lock_guard<std::mutex> lock(mutex_);
    seen_.insert({e.device, e.kind, e.stage});
    ++count_;
  }
  std::set<std::tuple<std::string, EngineTaskKind, int>> seen() const { return seen_; }
  int count() const { return count_; }

 private:
  mutable std::mutex mutex_;
  std::set<std::tuple<std::string, EngineTaskKind, int>> seen_;
  int count_ = 0;
};

}  // namespace

TEST(EngineBranch, InferenceMatchesTheModuleForEveryAssignmentAndMicrobatching) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  LoadedModel m = load(zoo("branchy"), "8x3x32x32");
  const auto inputs = make_inputs({parse_input_spec("8x3x32x32")}, 3);
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    expected = m.module.forward({inputs[0]}).toTensor();
  }
  const std::vector<std::pair<std::string, std::vector<int>>> assignments = {
      {"branches", by_branches(m.ir)}, {"alternating", alternating(m.ir)}, {"shuffled", shuffled(m.ir, 5)}};
  for (const auto& [name, device_of] : assignments) {
    for (int microbatches : {1, 4}) {
      Engine engine(m, branch_plan(m.ir, Mode::kInference, 8, microbatches, device_of));
      ASSERT_EQ(engine.bindings().size(), 2u) << name;
      for (int repeat = 0; repeat < 2; ++repeat) {
        const auto out = engine.step(StepInputs{inputs, {}}).outputs;
        ASSERT_EQ(out.size(), 1u);
        EXPECT_TRUE(torch::allclose(out[0], expected, 1e-5, 1e-6)) << name << " mb " << microbatches;
      }
    }
  }
}

// The runner drops its references to a step's outputs when it returns them (it held them until the next
// step began).
TEST(EngineBranch, KeepsNoTensorOfAnInferenceStep) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  LoadedModel m = load(zoo("branchy"), "8x3x32x32");
  for (int microbatches : {1, 2}) {
    Engine engine(m, branch_plan(m.ir, Mode::kInference, 8, microbatches, by_branches(m.ir)));
    EXPECT_EQ(testing::bytes_left_by_a_step(engine, "8x3x32x32").value(), 0) << microbatches << " mb";
  }
}

// A second output that is 0-d (an auxiliary loss, a mean over the batch): its plans keep the batch whole, and
// the runner's one piece per output is the output itself (concatenating one 0-d piece was an internal error).
TEST(EngineBranch, AZeroDimensionalOutputComesBackAsItIs) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const auto path = std::filesystem::temp_directory_path() / "partita_branch_scalar_output.pt";
  torch::manual_seed(4);
  torch::jit::Module module("ScalarOutput");
  module.register_parameter("w0", torch::randn({16, 4}), false);
  module.register_parameter("w1", torch::randn({16, 4}), false);
  module.define(R"JIT(
def forward(self, x):
    p = torch.softmax(torch.matmul(x, self.w0), -1)
    return torch.matmul(x, self.w1) * p, torch.sum(torch.mean(p, 0) ** 2)
)JIT");
  module.save(path.string());
  LoadedModel m = load(path.string(), "8x16");
  const auto inputs = make_inputs({parse_input_spec("8x16")}, 3);
  std::vector<torch::Tensor> expected;
  {
    torch::NoGradGuard no_grad;
    const auto tuple = m.module.forward({inputs[0]}).toTuple();
    for (const auto& v : tuple->elements()) expected.push_back(v.toTensor());
  }
  Engine engine(m, branch_plan(m.ir, Mode::kInference, 8, 1, alternating(m.ir)));
  const auto out = engine.step(StepInputs{inputs, {}}).outputs;
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(torch::allclose(out[0], expected[0], 1e-5, 1e-6));
  EXPECT_EQ(out[1].dim(), 0);
  EXPECT_TRUE(torch::allclose(out[1], expected[1], 1e-5, 1e-6)) << out[1] << " vs " << expected[1];
}

TEST(EngineBranch, TrainingMatchesOneDeviceFor20Steps) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const std::string path = zoo("branchy");
  const auto reference = reference_losses(path, "8x3x32x32", 20);
  testing::expect_same_losses(engine_losses(path, "8x3x32x32", 20, 1, by_branches), reference,
                              "branchy by branches");
  testing::expect_same_losses(engine_losses(path, "8x3x32x32", 20, 2, alternating), reference,
                              "branchy alternating, 2 mb");
  testing::expect_same_losses(
      engine_losses(path, "8x3x32x32", 20, 4, [](const Graph& g) { return shuffled(g, 11); }), reference,
      "branchy shuffled, 4 mb");
}

// shared_matrix's second input has no batch, and its first and last nodes read it: each device and
// microbatch gets it whole.
TEST(EngineBranch, ASharedInputReachesEveryDeviceWhole) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const std::string path = zoo("shared_matrix"), input = "8x16,16x16:shared";
  const auto reference = reference_losses(path, input, 20);
  testing::expect_same_losses(engine_losses(path, input, 20, 1, alternating), reference,
                              "shared_matrix alternating");
  testing::expect_same_losses(
      engine_losses(path, input, 20, 4, [](const Graph& g) { return shuffled(g, 11); }), reference,
      "shared_matrix shuffled, 4 mb");
}

TEST(EngineBranch, InPlaceUpdateOfAValueReadOnAnotherDevice) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const std::string path = diamond_model();
  LoadedModel m = load(path, "8x32");
  bool has_inplace = false;
  for (const Node& n : m.ir.nodes()) has_inplace = has_inplace || n.op == "aten::relu_";
  ASSERT_TRUE(has_inplace);
  const auto inputs = make_inputs({parse_input_spec("8x32")}, 4);
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    expected = m.module.forward({inputs[0].clone()}).toTensor();
  }
  Engine engine(m, branch_plan(m.ir, Mode::kInference, 8, 2, alternating(m.ir)));
  for (int repeat = 0; repeat < 20; ++repeat) {
    const auto out = engine.step(StepInputs{inputs, {}}).outputs;
    ASSERT_EQ(out.size(), 1u);
    ASSERT_TRUE(torch::allclose(out[0], expected, 1e-5, 1e-6)) << "repeat " << repeat;
  }
  const auto reference = reference_losses(path, "8x32", 20);
  testing::expect_same_losses(engine_losses(path, "8x32", 20, 1, alternating), reference,
                              "diamond alternating");
  testing::expect_same_losses(
      engine_losses(path, "8x32", 20, 2, [](const Graph& g) { return shuffled(g, 2); }), reference,
      "diamond shuffled");
}

TEST(EngineBranch, ObserversSeeForwardAndBackwardOnBothDevices) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  LoadedModel m = load(zoo("branchy"), "8x3x32x32");
  Engine engine(m, branch_plan(m.ir, Mode::kTraining, 8, 2, by_branches(m.ir)));
  Recorder recorder;
  engine.add_observer(&recorder);
  StepInputs batch;
  batch.inputs = make_inputs({parse_input_spec("8x3x32x32")}, 1);
  batch.targets = engine.make_targets(batch.inputs);
  engine.step(batch);
  const auto seen = recorder.seen();
  for (const auto& [device, stage] : {std::pair<std::string, int>{"cpu:0", 0}, {"cpu:1", 1}}) {
    EXPECT_TRUE(seen.count({device, EngineTaskKind::kForward, stage})) << device;
    EXPECT_TRUE(seen.count({device, EngineTaskKind::kBackward, stage})) << device;
  }
  // Both CPU workers step their part of the optimizer (optimizer_parts.h).
  EXPECT_TRUE(seen.count({"cpu:0", EngineTaskKind::kOptimizer, -1}));
  EXPECT_TRUE(seen.count({"cpu:1", EngineTaskKind::kOptimizer, -1}));
}

TEST(EngineBranch, AnOptimizerThatCannotBeSplitStepsOnTheLeastSlowedWorker) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  LoadedModel m = load(zoo("branchy"), "8x3x32x32");
  std::vector<torch::Tensor> trainable;
  for (const auto& p : m.parameters) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  EngineOptions o;
  o.optimizer = std::make_shared<torch::optim::RMSprop>(trainable, torch::optim::RMSpropOptions(1e-3));
  StepInputs batch;
  batch.inputs = make_inputs({parse_input_spec("8x3x32x32")}, 1);
  // The update runs on the CPU worker with the most threads, the first of equals, unless the plan assumed
  // that one slower (a rebalanced plan's device slowdowns): then the other, as the simulator predicts.
  Engine engine(m, branch_plan(m.ir, Mode::kTraining, 8, 2, by_branches(m.ir)), o);
  batch.targets = engine.make_targets(batch.inputs);
  Recorder recorder;
  engine.add_observer(&recorder);
  engine.step(batch);
  EXPECT_TRUE(recorder.seen().count({"cpu:0", EngineTaskKind::kOptimizer, -1}));
  EXPECT_FALSE(recorder.seen().count({"cpu:1", EngineTaskKind::kOptimizer, -1}));
  Plan slowed = branch_plan(m.ir, Mode::kTraining, 8, 2, by_branches(m.ir));
  slowed.source.device_slowdowns["cpu:0"] = 2.0;
  Engine second(m, slowed, o);
  Recorder after;
  second.add_observer(&after);
  second.step(batch);
  EXPECT_TRUE(after.seen().count({"cpu:1", EngineTaskKind::kOptimizer, -1}));
  EXPECT_FALSE(after.seen().count({"cpu:0", EngineTaskKind::kOptimizer, -1}));
}

// h = x w0 goes to cpu:1 (a = relu(h) w1) and stays on cpu:0 (b = sigmoid(h) w2); cpu:0 joins a + b. cpu:0's
// backward of b must not wait for h's gradient from cpu:1: it runs while cpu:1 works out a's backward.
TEST(EngineBranch, BackwardAfterASendDoesNotWaitForThatSendsGradient) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const auto path = std::filesystem::temp_directory_path() / "partita_branch_fork.pt";
  torch::manual_seed(5);
  torch::jit::Module module("Fork");
  for (const char* w : {"w0", "w1", "w2"})
    module.register_parameter(w, (torch::randn({16, 16}) * 0.2).requires_grad_(), false);
  module.define(R"JIT(
def forward(self, x):
    h = torch.matmul(x, self.w0)
    a = torch.matmul(torch.relu(h), self.w1)
    b = torch.matmul(torch.sigmoid(h), self.w2)
    return a + b
)JIT");
  module.save(path.string());
  LoadedModel m = load(path.string(), "8x16");
  std::vector<int> device_of(static_cast<size_t>(m.ir.num_nodes()), 0);
  NodeId relu = kNoNode;
  for (const Node& node : m.ir.nodes()) {
    if (node.op == "aten::relu") relu = node.id;
  }
  ASSERT_NE(relu, kNoNode);
  device_of[static_cast<size_t>(relu)] = 1;
  for (NodeId user : m.ir.value(m.ir.node(relu).outputs[0]).users) device_of[static_cast<size_t>(user)] = 1;
  Engine engine(m, branch_plan(m.ir, Mode::kTraining, 8, 1, device_of));

  // Holds cpu:1's backward until cpu:0 starts a second backward segment (b's), or 3 s pass.
  class HoldCpu1Backward : public RuntimeObserver {
   public:
    void on_task_begin(const TaskEvent& e) override {
      if (e.kind != EngineTaskKind::kBackward) return;
      std::unique_lock<std::mutex> lock(mutex_);
      if (e.device == "cpu:0") {
        ++cpu0_backwards_;
        cv_.notify_all();
      } else {
        overlapped_ = cv_.wait_for(lock, std::chrono::seconds(3), [&] { return cpu0_backwards_ >= 2; });
      }
    }
    bool overlapped() {
      std::lock_guard<std::mutex> lock(mutex_);
      return overlapped_;
    }

   private:
    std::mutex mutex_;
    std::condition_variable cv_;
    int cpu0_backwards_ = 0;
    bool overlapped_ = false;
  } hold;
  engine.add_observer(&hold);
  StepInputs batch;
  batch.inputs = make_inputs({parse_input_spec("8x16")}, 1);
  batch.targets = engine.make_targets(batch.inputs);
  engine.step(batch);
  EXPECT_TRUE(hold.overlapped()) << "cpu:0 waited for h's gradient before running b's backward";
}

TEST(EngineBranch, WorkerFailureNamesStageDeviceAndNodeAndDoesNotHang) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  LoadedModel m = load(zoo("branchy"), "8x3x32x32");
  for (Mode mode : {Mode::kInference, Mode::kTraining}) {
    std::vector<int> device_of = by_branches(m.ir);
    device_of[0] = 1;  // the first convolution on cpu:1, while cpu:0 waits for its output
    Engine engine(m, branch_plan(m.ir, mode, 8, 2, device_of));
    StepInputs bad;
    bad.inputs = {torch::randn({8, 4, 32, 32})};  // wrong channel count: node 0 fails
    bad.targets = torch::zeros({8}, torch::kInt64);
    try {
      engine.step(bad);
      FAIL() << "no error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("stage 1 on cpu:1"), std::string::npos) << msg;
      EXPECT_NE(msg.find("node 0 aten::_convolution"), std::string::npos) << msg;
    }
    StepInputs good;
    good.inputs = make_inputs({parse_input_spec("8x3x32x32")}, 1);
    if (mode == Mode::kTraining) good.targets = engine.make_targets(good.inputs);
    const auto result = engine.step(good);
    if (mode == Mode::kTraining) {
      EXPECT_GT(result.loss, 0.0);
    } else {
      EXPECT_EQ(result.outputs.size(), 1u);
    }
  }
}

TEST(EngineBranch, RefusesListsThatWouldDeadlock) {
  LoadedModel m = load(zoo("branchy"), "8x3x32x32");
  // Node 1 (relu) on cpu:1 needs node 0; cpu:0 runs node 2 (which needs node 1) before node 0.
  std::vector<int> device_of(static_cast<size_t>(m.ir.num_nodes()), 0);
  device_of[1] = 1;
  Plan p = branch_plan(m.ir, Mode::kInference, 8, 1, device_of);
  auto& nodes = p.stages[0].nodes;
  ASSERT_EQ(nodes[0], 0);
  ASSERT_EQ(nodes[1], 2);
  std::swap(nodes[0], nodes[1]);
  const Value& fed = m.ir.value(m.ir.node(2).inputs[0]);
  ASSERT_EQ(fed.producer, 1) << "branchy's node 2 should read node 1's output";
  try {
    Engine e(m, p);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("would wait on each other"), std::string::npos) << e.what();
  }
}

}  // namespace partita

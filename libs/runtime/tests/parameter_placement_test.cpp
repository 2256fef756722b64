// Where the engine keeps the model's parameters: a stage's own parameters (and their optimizer state) on its
// device, shared ones on the host with device copies. These paths are a GPU's; EngineOptions::
// cpu_parameter_copies runs them on CPU workers here, with the math of single-device training as the oracle.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include <torch/cuda.h>
#include <torch/optim.h>

#include "partita/core/error.h"
#include "partita/graph/analysis.h"
#include "partita/runtime/engine.h"
#include "partita/runtime/optimizer.h"
#include "partita/search/graph_identity.h"
#include "partita/search/search_options.h"
#include "reference_training.h"

namespace partita {

namespace {

using namespace partita::testing;

Plan base_plan(const Graph& g, Mode mode, int batch) {
  Plan p;
  p.graph = graph_identity(g);
  p.mode = mode;
  p.optimizer = Optimizer::kSgdMomentum;  // as the reference
  p.global_batch = batch;
  return p;
}

// Two stages on cpu:0 and cpu:1, 4 microbatches, 1F1B.
Plan pipeline_plan(const Graph& g, Mode mode, int batch) {
  Plan p = base_plan(g, mode, batch);
  p.microbatches = 4;
  p.strategy = StrategyKind::kPipeline;
  p.schedule = Schedule::kOneFOneB;
  const NodeId cut = best_cut_points(g, 1)[0].after_node;
  p.groups = {DeviceGroup{{"cpu:0"}, {batch / 4}}, DeviceGroup{{"cpu:1"}, {batch / 4}}};
  p.stages = {Stage{0, cut, 0}, Stage{cut + 1, g.num_nodes() - 1, 1}};
  return p;
}

// One stage, two replicas on cpu:0 and cpu:1 with unequal shares.
Plan data_plan(const Graph& g, Mode mode, int batch) {
  Plan p = base_plan(g, mode, batch);
  p.microbatches = 1;
  p.strategy = StrategyKind::kData;
  p.groups = {DeviceGroup{{"cpu:0", "cpu:1"}, {batch - batch / 4, batch / 4}}};
  p.stages = {Stage{0, g.num_nodes() - 1, 0}};
  return p;
}

int batch_of(const std::string& input) { return static_cast<int>(parse_input_spec(input).shape[0]); }

EngineOptions copies_options() {
  EngineOptions o;
  o.cpu_parameter_copies = true;
  return o;
}

// Runs `steps` training steps of `plan` on `m` (the reference's batch and targets), appending the losses.
void train(LoadedModel& m, const Plan& plan, const EngineOptions& options, int steps,
           const std::string& input, std::vector<double>& losses, std::vector<std::string>* homes = nullptr) {
  Engine engine(m, plan, options);
  StepInputs batch;
  batch.inputs = make_inputs({parse_input_spec(input)}, 100);
  batch.targets = engine.make_targets(batch.inputs, 7);
  for (int s = 0; s < steps; ++s) losses.push_back(engine.step(batch).loss);
  if (homes != nullptr) *homes = engine.parameter_homes();
}

std::vector<torch::Tensor> trainable(const LoadedModel& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}

void expect_same(const std::vector<double>& losses, const std::vector<torch::Tensor>& params,
                 const ReferenceTraining& reference, const std::string& what) {
  ASSERT_EQ(losses.size(), reference.losses.size()) << what;
  for (size_t i = 0; i < losses.size(); ++i) {
    EXPECT_LE(std::abs(losses[i] - reference.losses[i]), 1e-4 * std::abs(reference.losses[i]) + 1e-7)
        << what << " step " << i << ": " << losses[i] << " vs " << reference.losses[i];
  }
  EXPECT_LT(reference.losses.back(), reference.losses.front()) << what << ": training should reduce the loss";
  ASSERT_EQ(params.size(), reference.parameters.size()) << what;
  for (size_t k = 0; k < params.size(); ++k) {
    ASSERT_TRUE(params[k].device().is_cpu()) << what << " parameter " << k << " was not brought home";
    const double diff = (params[k] - reference.parameters[k]).abs().max().item<double>();
    const double scale = reference.parameters[k].abs().max().item<double>();
    EXPECT_LE(diff, 1e-4 * scale + 1e-7) << what << " parameter " << k;
  }
}

std::set<std::string> distinct(const std::vector<std::string>& homes) {
  return std::set<std::string>(homes.begin(), homes.end());
}

struct Case {
  const char* model;
  const char* input;
};

class ParameterPlacement : public ::testing::TestWithParam<Case> {};

}  // namespace

// A pipeline stage keeps the parameters only it reads and steps them itself; the model's tensors are the same
// objects after the engine, holding the trained values.
TEST_P(ParameterPlacement, PipelineStagesKeepTheirParametersWithTheSameMath) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const Case c = GetParam();
  const ReferenceTraining reference = reference_training(c.model, c.input, 12);
  LoadedModel m = load(c.model, c.input);
  const std::vector<torch::Tensor> handles = trainable(m);
  std::vector<torch::Tensor> before;  // aliases of the storage the parameters had (kept alive)
  for (const auto& p : handles) before.push_back(p.detach());
  std::vector<double> losses;
  std::vector<std::string> homes;
  train(m, pipeline_plan(m.ir, Mode::kTraining, batch_of(c.input)), copies_options(), 12, c.input, losses,
        &homes);
  ASSERT_EQ(homes.size(), handles.size());
  EXPECT_TRUE(distinct(homes).count("cpu:0") == 1 && distinct(homes).count("cpu:1") == 1)
      << "both stages should keep parameters of their own";
  const std::vector<torch::Tensor> after = trainable(m);
  for (size_t k = 0; k < handles.size(); ++k) {
    EXPECT_TRUE(after[k].is_same(handles[k])) << "parameter " << k << " is not the model's tensor any more";
    // A kept parameter lived in memory of its stage's own and came back into new host memory.
    EXPECT_EQ(after[k].is_alias_of(before[k]), homes[k] == "host") << "parameter " << k << ": " << homes[k];
  }
  expect_same(losses, after, reference, std::string(c.model) + " pipeline");
}

// Replicas share every parameter: all stay on the host, each replica trains on copies whose gradients are
// gathered and which are refreshed after every update.
TEST_P(ParameterPlacement, ReplicasTrainOnCopiesOfHostParameters) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const Case c = GetParam();
  const ReferenceTraining reference = reference_training(c.model, c.input, 12);
  LoadedModel m = load(c.model, c.input);
  std::vector<double> losses;
  std::vector<std::string> homes;
  train(m, data_plan(m.ir, Mode::kTraining, batch_of(c.input)), copies_options(), 12, c.input, losses,
        &homes);
  EXPECT_EQ(distinct(homes), std::set<std::string>{"host"});
  expect_same(losses, trainable(m), reference, std::string(c.model) + " data parallel");
}

INSTANTIATE_TEST_SUITE_P(Zoo, ParameterPlacement,
                         ::testing::Values(Case{"mlp", "8x64"}, Case{"cnn", "8x3x32x32"},
                                           Case{"gpt", "4x32:i64:2048"}),
                         [](const auto& param_info) { return std::string(param_info.param.model); });

// A stage that offloads optimizer state leaves its parameters on the host; the other stage keeps its own.
TEST(ParameterPlacementRules, OptimizerStateOffloadKeepsAStagesParametersOnTheHost) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  const ReferenceTraining reference = reference_training("mlp", "8x64", 12);
  LoadedModel m = load("mlp", "8x64");
  Plan plan = pipeline_plan(m.ir, Mode::kTraining, 8);
  plan.stages[0].offload = Offload::kOptimizerState;
  std::vector<double> losses;
  std::vector<std::string> homes;
  train(m, plan, copies_options(), 12, "8x64", losses, &homes);
  EXPECT_EQ(distinct(homes), (std::set<std::string>{"host", "cpu:1"}));
  expect_same(losses, trainable(m), reference, "mlp, stage 0 offloading optimizer state");
}

// Without memory of their own (plain CPU workers) nothing moves: the host's tensors are the stages'.
TEST(ParameterPlacementRules, CpuWorkersUseTheHostsTensors) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  LoadedModel m = load("mlp", "8x64");
  std::vector<torch::Tensor> before;
  for (const auto& p : trainable(m)) before.push_back(p.detach());
  Engine engine(m, pipeline_plan(m.ir, Mode::kTraining, 8));
  EXPECT_EQ(distinct(engine.parameter_homes()), std::set<std::string>{"host"});
  const auto params = trainable(m);
  for (size_t k = 0; k < params.size(); ++k) EXPECT_TRUE(params[k].is_alias_of(before[k])) << k;
}

// An optimizer handed from one engine to the next (rebalancing, resuming) carries its state through the
// moves: 6 steps of a pipeline keeping parameters on its stages, then 6 of a data-parallel plan on host
// copies, make the 12 steps of single-device training.
TEST(ParameterPlacementRules, AHandedOverOptimizerKeepsItsState) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  const ReferenceTraining reference = reference_training("cnn", "8x3x32x32", 12);
  LoadedModel m = load("cnn", "8x3x32x32");
  EngineOptions options = copies_options();
  options.optimizer = make_optimizer(Optimizer::kSgdMomentum, trainable(m), options.learning_rate);
  std::vector<double> losses;
  train(m, pipeline_plan(m.ir, Mode::kTraining, 8), options, 6, "8x3x32x32", losses);
  train(m, data_plan(m.ir, Mode::kTraining, 8), options, 6, "8x3x32x32", losses);
  expect_same(losses, trainable(m), reference, "cnn, pipeline then data parallel");
}

// Inference leaves the model's tensors alone: workers with memory of their own read copies of what their
// stage reads, and the outputs are the module's.
TEST(ParameterPlacementRules, InferenceReadsCopiesAndLeavesTheModelAlone) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  LoadedModel m = load("cnn", "8x3x32x32");
  std::vector<torch::Tensor> before;
  for (const auto& p : m.parameters) before.push_back(p.detach());
  const auto inputs = make_inputs({parse_input_spec("8x3x32x32")}, 100);
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    expected = m.module.forward({inputs[0]}).toTensor();
  }
  for (const Plan& plan : {pipeline_plan(m.ir, Mode::kInference, 8), data_plan(m.ir, Mode::kInference, 8)}) {
    Engine engine(m, plan, copies_options());
    StepInputs batch;
    batch.inputs = inputs;
    const StepResult r = engine.step(batch);
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_TRUE(torch::allclose(r.outputs[0], expected, 1e-5, 1e-6)) << strategy_name(plan.strategy);
    EXPECT_EQ(distinct(engine.parameter_homes()), std::set<std::string>{"host"});
  }
  for (size_t i = 0; i < m.parameters.size(); ++i) EXPECT_TRUE(m.parameters[i].is_alias_of(before[i])) << i;
}

// On a GPU (runs only where CUDA is): the cuda:0 stage's own parameters and their momentum live on cuda:0
// while the engine runs, and come back to the host after it, with the math of single-device training.
TEST(ParameterPlacementRules, ACudaStageKeepsItsParametersAndOptimizerStateOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const ReferenceTraining reference = reference_training("cnn", "8x3x32x32", 12);
  LoadedModel m = load("cnn", "8x3x32x32");
  Plan plan = pipeline_plan(m.ir, Mode::kTraining, 8);
  plan.groups[0].devices = {"cuda:0"};
  plan.groups[1].devices = {"cpu"};
  std::vector<double> losses;
  {
    Engine engine(m, plan);
    StepInputs batch;
    batch.inputs = make_inputs({parse_input_spec("8x3x32x32")}, 100);
    batch.targets = engine.make_targets(batch.inputs, 7);
    for (int s = 0; s < 12; ++s) losses.push_back(engine.step(batch).loss);
    const auto homes = engine.parameter_homes();
    const auto params = engine.parameters();
    ASSERT_EQ(homes.size(), params.size());
    int on_gpu = 0;
    for (size_t k = 0; k < params.size(); ++k) {
      EXPECT_EQ(params[k].device().is_cuda(), homes[k] == "cuda:0") << "parameter " << k << ": " << homes[k];
      on_gpu += homes[k] == "cuda:0" ? 1 : 0;
    }
    EXPECT_GT(on_gpu, 0);
  }
  // GPU kernels reassociate sums: a looser tolerance than on the CPU.
  ASSERT_EQ(losses.size(), reference.losses.size());
  for (size_t i = 0; i < losses.size(); ++i)
    EXPECT_NEAR(losses[i], reference.losses[i], 1e-3 * std::abs(reference.losses[i])) << "step " << i;
  for (const auto& p : trainable(m)) EXPECT_TRUE(p.device().is_cpu());
}

// The optimizer state of every kind make_optimizer makes can be found and moved; one it cannot move is
// refused.
TEST(MoveParameterState, FindsTheStateOfEveryOptimizerKind) {
  for (Optimizer kind : {Optimizer::kSgdMomentum, Optimizer::kAdam, Optimizer::kAdamW}) {
    torch::Tensor stepped = torch::ones({3}, torch::requires_grad());
    torch::Tensor idle = torch::ones({2}, torch::requires_grad());
    auto opt = make_optimizer(kind, {stepped, idle}, 0.1);
    (stepped * stepped).sum().backward();
    opt->step();
    EXPECT_TRUE(move_parameter_state(*opt, stepped, torch::kCPU)) << optimizer_name(kind);
    EXPECT_FALSE(move_parameter_state(*opt, idle, torch::kCPU))
        << optimizer_name(kind) << ": no gradient yet";
  }
  torch::Tensor p = torch::ones({3}, torch::requires_grad());
  torch::optim::RMSprop rmsprop({p}, torch::optim::RMSpropOptions(0.1));
  (p * p).sum().backward();
  rmsprop.step();
  EXPECT_THROW(move_parameter_state(rmsprop, p, torch::kCPU), Error);
}

}  // namespace partita

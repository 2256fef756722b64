// The engine runs activation offload and optimizer-state offload with the math of single-device training.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <thread>

#include <torch/cuda.h>
#include <torch/optim.h>

#include "partita/core/error.h"
#include "partita/graph/analysis.h"
#include "partita/runtime/engine.h"
#include "partita/search/graph_identity.h"
#include "reference_training.h"

namespace partita {

namespace {

using namespace partita::testing;

// Two stages on `first` and `second`, 4 microbatches, 1F1B, SGD with momentum (as the reference).
Plan pipeline_plan(const Graph& g, Mode mode, int batch, const std::string& first = "cpu:0",
                   const std::string& second = "cpu:1") {
  Plan p;
  p.graph = graph_identity(g);
  p.mode = mode;
  p.optimizer = Optimizer::kSgdMomentum;
  p.global_batch = batch;
  p.microbatches = 4;
  p.strategy = StrategyKind::kPipeline;
  p.schedule = Schedule::kOneFOneB;
  const NodeId cut = best_cut_points(g, 1)[0].after_node;
  p.groups = {DeviceGroup{{first}, {batch / 4}}, DeviceGroup{{second}, {batch / 4}}};
  p.stages = {Stage{0, cut, 0}, Stage{cut + 1, g.num_nodes() - 1, 1}};
  return p;
}

// An engine run: losses and parameters as the reference has them, plus what each step offloaded.
struct Training : ReferenceTraining {
  std::vector<std::vector<OffloadedActivations>> offloaded;  // [step][stage]
};

int batch_of(const std::string& input) { return static_cast<int>(parse_input_spec(input).shape[0]); }

Training engine_run(const std::string& name, const std::string& input, int steps, const Plan& plan) {
  LoadedModel m = load(name, input);
  Engine engine(m, plan);
  StepInputs batch;
  batch.inputs = make_inputs({parse_input_spec(input)}, 100);
  batch.targets = engine.make_targets(batch.inputs, 7);
  Training run;
  for (int s = 0; s < steps; ++s) {
    StepResult r = engine.step(batch);
    run.losses.push_back(r.loss);
    run.offloaded.push_back(r.offloaded);
  }
  for (const auto& p : engine.parameters()) run.parameters.push_back(p.detach().to(torch::kCPU).clone());
  return run;
}

void expect_same(const Training& a, const ReferenceTraining& reference, const std::string& what,
                 double tolerance = 1e-4) {
  ASSERT_EQ(a.losses.size(), reference.losses.size()) << what;
  for (size_t i = 0; i < a.losses.size(); ++i) {
    EXPECT_LE(std::abs(a.losses[i] - reference.losses[i]), tolerance * std::abs(reference.losses[i]) + 1e-7)
        << what << " step " << i << ": " << a.losses[i] << " vs " << reference.losses[i];
  }
  EXPECT_LT(reference.losses.back(), reference.losses.front()) << what << ": training should reduce the loss";
  ASSERT_EQ(a.parameters.size(), reference.parameters.size()) << what;
  for (size_t k = 0; k < a.parameters.size(); ++k) {
    const double diff = (a.parameters[k] - reference.parameters[k]).abs().max().item<double>();
    const double scale = reference.parameters[k].abs().max().item<double>();
    EXPECT_LE(diff, tolerance * scale + 1e-7) << what << " parameter " << k;
  }
}

// Every step copied something for the stages that offload activations, the same amount each step, and
// nothing for the others.
void expect_counts(const Training& run, const Plan& plan, const std::string& what) {
  ASSERT_FALSE(run.offloaded.empty());
  for (size_t step = 0; step < run.offloaded.size(); ++step) {
    ASSERT_EQ(run.offloaded[step].size(), plan.stages.size()) << what;
    for (size_t s = 0; s < plan.stages.size(); ++s) {
      const OffloadedActivations& o = run.offloaded[step][s];
      if (offloads_activations(plan.stages[s].offload)) {
        EXPECT_GT(o.tensors, 0) << what << " stage " << s << " step " << step;
        EXPECT_GT(o.bytes, 0) << what << " stage " << s << " step " << step;
        EXPECT_EQ(o.bytes, run.offloaded[0][s].bytes) << what << " stage " << s << " step " << step;
      } else {
        EXPECT_EQ(o.tensors, 0) << what << " stage " << s << " step " << step;
        EXPECT_EQ(o.bytes, 0) << what << " stage " << s << " step " << step;
      }
    }
  }
}

struct Case {
  const char* model;
  const char* input;
};

class EngineOffload : public ::testing::TestWithParam<Case> {};

}  // namespace

TEST_P(EngineOffload, OffloadedStagesMatchSingleDeviceTrainingFor20Steps) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const Case c = GetParam();
  const ReferenceTraining reference = reference_training(c.model, c.input, 20);
  struct Variant {
    const char* name;
    int stage;  // the stage that offloads
    Offload offload;
    Checkpointing other;  // the other stage's checkpointing
  };
  const Variant variants[] = {
      {"activations on stage 0", 0, Offload::kActivations, Checkpointing::kNone},
      {"optimizer state on stage 1", 1, Offload::kOptimizerState, Checkpointing::kNone},
      {"both on the last stage (with the loss)", 1, Offload::kActivationsAndOptimizerState,
       Checkpointing::kNone},
      {"both on stage 0, stage 1 checkpointed", 0, Offload::kActivationsAndOptimizerState,
       Checkpointing::kFull},
  };
  for (const Variant& v : variants) {
    const std::string what = std::string(c.model) + ", " + v.name;
    LoadedModel m = load(c.model, c.input);
    Plan plan = pipeline_plan(m.ir, Mode::kTraining, batch_of(c.input));
    plan.stages[static_cast<size_t>(v.stage)].offload = v.offload;
    plan.stages[static_cast<size_t>(1 - v.stage)].checkpointing = v.other;
    const Training run = engine_run(c.model, c.input, 20, plan);
    expect_same(run, reference, what);
    expect_counts(run, plan, what);
    const auto& o = run.offloaded.back()[static_cast<size_t>(v.stage)];
    std::cout << what << ": " << o.tensors << " tensors, " << o.bytes << " bytes offloaded per step\n";
  }
}

INSTANTIATE_TEST_SUITE_P(Zoo, EngineOffload,
                         ::testing::Values(Case{"mlp", "8x64"}, Case{"cnn", "8x3x32x32"},
                                           Case{"gpt", "4x32:i64:2048"}),
                         [](const auto& param_info) { return std::string(param_info.param.model); });

// Parameters stay where they are: a stage of linear layers copies the activations its matmuls save, not
// the weights (which a matmul saves too when its input needs a gradient: the MLP's second stage).
TEST(EngineOffload, ParametersAreNotCopied) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  LoadedModel m = load("mlp", "8x64");
  int64_t parameter_bytes = 0;
  for (const auto& p : m.parameters) parameter_bytes += p.numel() * p.element_size();
  for (int stage : {0, 1}) {
    Plan plan = pipeline_plan(m.ir, Mode::kTraining, 8);
    plan.stages[static_cast<size_t>(stage)].offload = Offload::kActivations;
    const Training run = engine_run("mlp", "8x64", 1, plan);
    const OffloadedActivations& o = run.offloaded[0][static_cast<size_t>(stage)];
    EXPECT_GT(o.tensors, 0) << "stage " << stage;
    // 4 microbatches of 2 samples: every saved activation together is far below the weights' bytes.
    EXPECT_LT(o.bytes, parameter_bytes / 4) << "stage " << stage << ": weights were copied";
  }
}

TEST(EngineOffload, InferencePlansWithOffloadAreRefusedWithTheReason) {
  LoadedModel m = load("mlp", "8x64");
  for (Offload o :
       {Offload::kActivations, Offload::kOptimizerState, Offload::kActivationsAndOptimizerState}) {
    Plan plan = pipeline_plan(m.ir, Mode::kInference, 8);
    plan.stages[1].offload = o;
    const auto refusal = engine_refusal(plan);
    ASSERT_TRUE(refusal.has_value()) << offload_name(o);
    EXPECT_NE(refusal->find("offload is a training choice"), std::string::npos) << *refusal;
    EXPECT_NE(refusal->find("stage 1"), std::string::npos) << *refusal;
    try {
      Engine engine(m, plan);
      FAIL() << "an inference plan with offload ran";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), *refusal);
    }
  }
  Plan training = pipeline_plan(m.ir, Mode::kTraining, 8);
  for (Offload o :
       {Offload::kActivations, Offload::kOptimizerState, Offload::kActivationsAndOptimizerState}) {
    training.stages[0].offload = o;
    EXPECT_FALSE(engine_refusal(training).has_value()) << offload_name(o);
  }
}

TEST(EngineOffload, BranchPlansRefuseActivationOffload) {
  LoadedModel m = load("mlp", "8x64");
  Plan branch = pipeline_plan(m.ir, Mode::kTraining, 8);
  branch.strategy = StrategyKind::kBranch;
  for (auto& st : branch.stages) {
    for (NodeId n = st.first; n <= st.last; ++n) st.nodes.push_back(n);
  }
  ASSERT_TRUE(branch.branch_layout());
  EXPECT_FALSE(engine_refusal(branch).has_value());
  branch.stages[1].offload = Offload::kOptimizerState;
  EXPECT_FALSE(engine_refusal(branch).has_value());
  branch.stages[1].offload = Offload::kActivations;
  EXPECT_NE(engine_refusal(branch).value_or("").find("branch-parallel plans do not run yet"),
            std::string::npos);
}

// On a machine with a GPU (scripts/gpu-check): stage 0 on cuda:0 offloading both, stage 1 on the CPU. The
// same plan without offload is the reference (same kernels), and both stay close to CPU training.
TEST(EngineOffload, CudaStageOffloadsToPinnedHostMemoryWithTheSameMath) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const auto& [model, input] : {std::pair{"mlp", "8x64"}, {"gpt", "4x32:i64:2048"}}) {
    LoadedModel m = load(model, input);
    Plan plain = pipeline_plan(m.ir, Mode::kTraining, batch_of(input), "cuda:0", "cpu:0");
    Plan offload = plain;
    offload.stages[0].offload = Offload::kActivationsAndOptimizerState;
    const Training gpu_plain = engine_run(model, input, 20, plain);
    const Training gpu_offload = engine_run(model, input, 20, offload);
    expect_same(gpu_offload, gpu_plain, std::string(model) + " cuda offload vs cuda plain");
    expect_counts(gpu_offload, offload, std::string(model) + " cuda offload");
    expect_same(gpu_offload, reference_training(model, input, 20),
                std::string(model) + " cuda offload vs cpu", 1e-3);
    const auto& o = gpu_offload.offloaded.back()[0];
    std::cout << model << " cuda:0 stage: " << o.tensors << " tensors, " << o.bytes
              << " bytes offloaded per step\n";
  }
}

}  // namespace partita

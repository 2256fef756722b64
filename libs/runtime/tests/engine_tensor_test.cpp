// Tensor-parallel plans in the engine (engine_tensor.cpp): one group splits every pair's matmuls.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <iostream>
#include <mutex>
#include <set>

#include "hybrid_layouts.h"
#include "partita/core/error.h"
#include "partita/graph/analysis.h"
#include "partita/runtime/engine.h"
#include "reference_training.h"

#include <torch/script.h>

namespace partita {

namespace {

using testing::load;
using testing::reference_training;
using testing::tensor_pipeline_plan;
using testing::train_losses;
using testing::two_cores;

Plan tensor_plan(const Graph& g, Mode mode, int batch, int microbatches, int devices) {
  Plan p;
  p.graph = graph_identity(g);
  p.mode = mode;
  p.optimizer = Optimizer::kSgdMomentum;
  p.strategy = StrategyKind::kTensor;
  p.schedule = Schedule::kOneFOneB;
  p.global_batch = batch;
  p.microbatches = microbatches;
  DeviceGroup group;
  // Four devices oversubscribe the two cores (as engine_hybrid_test does).
  group.devices = devices == 2 ? std::vector<std::string>{"cpu:0", "cpu:1"}
                               : std::vector<std::string>{"cpu:0", "cpu:1", "cpu:0-1", "cpu"};
  group.batch_shares.assign(static_cast<size_t>(devices), batch / microbatches);
  group.parallelism = GroupParallelism::kTensor;
  p.groups = {group};
  p.stages = {Stage{0, g.num_nodes() - 1, 0}};
  return p;
}

// Two replicas of 2-way tensor groups on four devices (oversubscribing the two cores); `shares`: each
// replica's samples of a microbatch.
Plan replicated_tensor_plan(const Graph& g, Mode mode, int batch, int microbatches,
                            std::pair<int, int> shares) {
  Plan p = tensor_plan(g, mode, batch, microbatches, 4);
  p.groups[0].tensor_size = 2;
  p.groups[0].batch_shares = {shares.first, shares.first, shares.second, shares.second};
  return p;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-4 * std::max(1.0, std::abs(want[i]))) << what << " step " << i;
}

// The engine's 'steps' training losses and its parameters afterwards equal plain one-device training's
// (within 1e-4).
void expect_trains_like(Engine& engine, const std::string& input, const testing::ReferenceTraining& reference,
                        const std::string& what) {
  expect_close(train_losses(engine, input, static_cast<int>(reference.losses.size())), reference.losses,
               what);
  const auto params = engine.parameters();
  ASSERT_EQ(params.size(), reference.parameters.size()) << what;
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(torch::allclose(params[i], reference.parameters[i], 1e-4, 1e-5))
        << what << " parameter " << i;
}

struct Counter : RuntimeObserver {
  std::mutex mutex;
  std::set<std::tuple<int, int, int>> seen;  // (kind, worker, microbatch)
  void on_task_end(const TaskEvent& e) override {
    std::lock_guard<std::mutex> lock(mutex);
    if (e.kind == EngineTaskKind::kForward || e.kind == EngineTaskKind::kBackward)
      seen.insert({static_cast<int>(e.kind), e.worker, e.microbatch});
  }
};

struct Case {
  const char* model;
  const char* input;
  int devices;
  int microbatches;
};

class EngineTensorTraining : public ::testing::TestWithParam<Case> {};

}  // namespace

TEST_P(EngineTensorTraining, MatchesSingleDeviceTrainingFor20Steps) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const Case c = GetParam();
  const int batch = static_cast<int>(spec_batch(testing::specs_of(c.input)));
  const auto reference = reference_training(c.model, c.input, 20);
  LoadedModel m = load(c.model, c.input);
  Engine engine(m, tensor_plan(m.ir, Mode::kTraining, batch, c.microbatches, c.devices));
  Counter counter;
  engine.add_observer(&counter);
  const std::string what = std::string(c.model) + " " + std::to_string(c.devices) + "-way, " +
                           std::to_string(c.microbatches) + " microbatch(es)";
  expect_trains_like(engine, c.input, reference, what);
  EXPECT_LT(reference.losses.back(), reference.losses.front())
      << what << ": the training should lower the loss";
  // Every device ran a forward and a backward of every microbatch.
  EXPECT_EQ(counter.seen.size(), static_cast<size_t>(2 * c.devices * c.microbatches)) << what;
}

INSTANTIATE_TEST_SUITE_P(Zoo, EngineTensorTraining,
                         ::testing::Values(Case{"mlp", "8x64", 2, 1}, Case{"mlp", "8x64", 2, 2},
                                           Case{"cnn", "8x3x32x32", 2, 2}, Case{"gpt", "4x32:i64:2048", 2, 1},
                                           Case{"gpt", "4x32:i64:2048", 2, 2},
                                           Case{"gpt", "2x16:i64:2048", 4, 1},
                                           Case{"forked_heads", "8x32", 2, 2},
                                           Case{"shared_matrix", "8x16,16x16:shared", 2, 2}),
                         [](const auto& param_info) {
                           return std::string(param_info.param.model) + "_" +
                                  std::to_string(param_info.param.devices) + "way_" +
                                  std::to_string(param_info.param.microbatches) + "mb";
                         });

NodeId node_in(const Graph& g, const std::string& scope) {
  for (const Node& n : g.nodes()) {
    if (n.scope == scope) return n.id;
  }
  ADD_FAILURE() << "no node in " << scope;
  return 0;
}

// Pipelines of tensor groups (the plan's schedule; what crosses a cut travels whole, posted by a stage's
// first device and read by every device of the next): the same losses as one device.
TEST(EngineTensor, PipelinesOfTensorGroupsMatchSingleDeviceTraining) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  struct Layout {
    const char* model;
    const char* input;
    int microbatches;
    bool cut_at_fc2;  // mlp: after fc2 (else the best cut, between GPT blocks)
    std::vector<std::vector<std::string>> devices;
    // Per stage, non-empty: these batch shares, as a data-parallel group (as replicas of 2-way tensor groups
    // when the stage has four devices).
    std::vector<std::vector<int>> data_shares;
    Schedule schedule = Schedule::kOneFOneB;
  };
  const std::vector<Layout> layouts = {
      {"gpt", "4x32:i64:2048", 2, false, {{"cpu:0", "cpu:1"}, {"cpu:0-1", "cpu"}}, {}},
      {"gpt", "4x32:i64:2048", 2, false, {{"cpu:0", "cpu:1"}, {"cpu:0-1", "cpu"}}, {}, Schedule::kGPipe},
      {"gpt", "4x32:i64:2048", 1, false, {{"cpu"}, {"cpu:0", "cpu:1"}}, {}},
      {"mlp", "8x64", 2, true, {{"cpu:0", "cpu:1"}, {"cpu"}}, {}},
      // Stages whose devices hold different samples: two data-parallel devices (shares 1 and 3 of each
      // microbatch of 4) then a 2-way tensor group, and a tensor group then two data-parallel devices.
      {"mlp", "8x64", 2, true, {{"cpu:0", "cpu:1"}, {"cpu:0-1", "cpu"}}, {{1, 3}, {}}},
      {"gpt", "4x32:i64:2048", 1, false, {{"cpu:0", "cpu:1"}, {"cpu:0-1", "cpu"}}, {{}, {1, 3}}},
      // Two replicas of 2-way groups (tensor_size 2, shares 1 and 3) then a 2-way group: a tensor x data slot
      // of a hybrid plan (six device ids for two cores: "cpu:0-0" is core 0 again under another name).
      {"mlp",
       "8x64",
       2,
       true,
       {{"cpu:0", "cpu:1", "cpu:0-1", "cpu"}, {"cpu:0-0", "cpu:1-1"}},
       {{1, 1, 3, 3}, {}}},
  };
  for (const Layout& l : layouts) {
    const int batch = static_cast<int>(parse_input_spec(l.input).shape[0]);
    const auto reference = reference_training(l.model, l.input, 20);
    LoadedModel m = load(l.model, l.input);
    const NodeId cut = l.cut_at_fc2 ? node_in(m.ir, "fc2") : best_cut_points(m.ir, 1)[0].after_node;
    Plan plan = tensor_pipeline_plan(m.ir, Mode::kTraining, batch, l.microbatches, cut, l.devices);
    plan.schedule = l.schedule;
    for (size_t k = 0; k < l.data_shares.size(); ++k) {
      if (l.data_shares[k].empty()) continue;
      plan.groups[k].batch_shares = l.data_shares[k];
      if (plan.groups[k].devices.size() == 4) {
        plan.groups[k].tensor_size = 2;  // replicas of 2-way tensor groups
      } else {
        plan.groups[k].parallelism = GroupParallelism::kData;
      }
    }
    Engine engine(m, plan);
    Counter counter;
    engine.add_observer(&counter);
    const std::string what = std::string(l.model) + " pipeline of " + std::to_string(l.devices[0].size()) +
                             " then " + std::to_string(l.devices[1].size()) + " device(s)" +
                             (l.data_shares.empty() ? "" : " with replicas in a stage") + ", " +
                             std::string(schedule_name(l.schedule));
    expect_trains_like(engine, l.input, reference, what);
    const size_t workers = l.devices[0].size() + l.devices[1].size();
    EXPECT_EQ(counter.seen.size(), 2 * workers * static_cast<size_t>(l.microbatches)) << what;
  }
  // Inference: the module's outputs.
  LoadedModel m = load("gpt", "4x32:i64:2048");
  const auto inputs = make_inputs({parse_input_spec("4x32:i64:2048")}, 100);
  const torch::Tensor want = m.module.forward({inputs[0]}).toTensor();
  Engine engine(m, tensor_pipeline_plan(m.ir, Mode::kInference, 4, 2, best_cut_points(m.ir, 1)[0].after_node,
                                        {{"cpu:0", "cpu:1"}, {"cpu:0-1", "cpu"}}));
  StepInputs batch;
  batch.inputs = inputs;
  const auto out = engine.step(batch).outputs;
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(torch::allclose(out[0], want, 1e-4, 1e-5)) << (out[0] - want).abs().max().item<double>();
}

// Memory savings in tensor groups: a checkpointed stage (its first forward without autograd, recomputed
// with its collectives in backward) and a stage with activation offload train like one device, alone and
// as pipeline stages.
TEST(EngineTensor, CheckpointedAndOffloadingStagesMatchSingleDeviceTraining) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  const std::string input = "4x32:i64:2048";
  const auto reference = reference_training("gpt", input, 20);
  struct Setting {
    std::string what;
    Checkpointing first, second;
    Offload first_offload = Offload::kNone, second_offload = Offload::kNone;
    Schedule schedule = Schedule::kOneFOneB;
  };
  const std::vector<Setting> settings = {
      {"both stages checkpointed, 1F1B", Checkpointing::kFull, Checkpointing::kFull},
      {"first stage checkpointed, GPipe", Checkpointing::kFull, Checkpointing::kNone, Offload::kNone,
       Offload::kNone, Schedule::kGPipe},
      {"activation offload on both, checkpointing on none", Checkpointing::kNone, Checkpointing::kNone,
       Offload::kActivations, Offload::kActivations},
  };
  for (const Setting& setting : settings) {
    LoadedModel m = load("gpt", input);
    Plan plan = tensor_pipeline_plan(m.ir, Mode::kTraining, 4, 2, best_cut_points(m.ir, 1)[0].after_node,
                                     {{"cpu:0", "cpu:1"}, {"cpu:0-1", "cpu"}});
    plan.schedule = setting.schedule;
    plan.stages[0].checkpointing = setting.first;
    plan.stages[1].checkpointing = setting.second;
    plan.stages[0].offload = setting.first_offload;
    plan.stages[1].offload = setting.second_offload;
    Engine engine(m, plan);
    Counter counter;
    engine.add_observer(&counter);
    expect_trains_like(engine, input, reference, "gpt pipeline of 2-way groups, " + setting.what);
    // A recompute belongs to its backward: one forward and one backward task per device and microbatch.
    EXPECT_EQ(counter.seen.size(), 2u * 4 * 2) << setting.what;
    if (setting.first_offload == Offload::kActivations) {
      StepInputs batch;
      batch.inputs = make_inputs({parse_input_spec(input)}, 100);
      batch.targets = engine.make_targets(batch.inputs, 7);
      const StepResult r = engine.step(batch);
      for (size_t k = 0; k < 2; ++k)
        EXPECT_GT(r.offloaded.at(k).tensors, 0) << "stage " << k << " offloaded nothing";
    }
  }
  // One tensor group over the whole model, checkpointed.
  LoadedModel m = load("gpt", input);
  Plan plan = tensor_plan(m.ir, Mode::kTraining, 4, 2, 2);
  plan.stages[0].checkpointing = Checkpointing::kFull;
  Engine engine(m, plan);
  expect_trains_like(engine, input, reference, "gpt 2-way, checkpointed");
}

// Dropout on activations a tensor group holds whole (dropout_mlp: on the input and after each all-reduced
// row-split linear): every device of the group draws the same mask there, from the group's generator, which
// is seeded as one device's worker is, so a 2-way group trains exactly as one device does with the same
// random seed, checkpointed or not. (Each device drawing its own mask, the group's copies of the activation
// differed and the math matched no single device: checked by drawing from the device's own generator.)
TEST(EngineTensor, EveryDeviceOfAGroupDrawsTheSameMaskForAWholeActivation) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  const std::string input = "8x32";
  struct Run {
    std::vector<double> losses;
    std::vector<torch::Tensor> parameters;
  };
  const auto train = [&](const std::function<Plan(const Graph&)>& make) {
    LoadedModel m = load("dropout_mlp", input);
    EngineOptions options;
    options.random_seed = 3;
    Engine engine(m, make(m.ir), options);
    Run run;
    run.losses = train_losses(engine, input, 8);
    run.parameters = engine.parameters();
    return run;
  };
  const Run one = train([](const Graph& g) {
    Plan p = tensor_plan(g, Mode::kTraining, 8, 2, 2);
    p.strategy = StrategyKind::kData;
    p.groups = {DeviceGroup{{"cpu:0"}, {4}}};
    return p;
  });
  for (Checkpointing c : {Checkpointing::kNone, Checkpointing::kFull}) {
    const std::string what = c == Checkpointing::kFull ? "2-way, checkpointed" : "2-way";
    const Run tensor = train([&](const Graph& g) {
      Plan p = tensor_plan(g, Mode::kTraining, 8, 2, 2);
      p.stages[0].checkpointing = c;
      return p;
    });
    expect_close(tensor.losses, one.losses, what);
    ASSERT_EQ(tensor.parameters.size(), one.parameters.size());
    for (size_t i = 0; i < one.parameters.size(); ++i)
      EXPECT_TRUE(torch::allclose(tensor.parameters[i], one.parameters[i], 1e-4, 1e-5))
          << what << " parameter " << i;
  }
}

// Checkpointing a tensor group keeps only what its stage's first forward sends: a GPipe step's peak memory
// falls (all four microbatches' activations are alive at once without it, one microbatch's with it).
TEST(EngineTensor, CheckpointingLowersMeasuredPeakMemory) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  auto peak = [&](Checkpointing c) {
    LoadedModel m = load("gpt", "8x128:i64:2048");
    Plan plan = tensor_plan(m.ir, Mode::kTraining, 8, 4, 2);
    plan.schedule = Schedule::kGPipe;
    plan.stages[0].checkpointing = c;
    Engine engine(m, plan);
    return testing::measured_step_peak(engine, "8x128:i64:2048");
  };
  const Bytes plain = peak(Checkpointing::kNone);
  const Bytes checkpointed = peak(Checkpointing::kFull);
  std::cout << "peak bytes: plain " << plain.value() << ", checkpointed " << checkpointed.value() << "\n";
  // Measured here: 126 MB plain, 59 MB checkpointed; about 35 MB of either is not activations (the step's
  // weight parts, gradients), so the activations went from ~90 MB (four microbatches) to ~23 MB (one).
  EXPECT_LT(checkpointed.value(), plain.value() * 6 / 10)
      << "plain " << plain.value() << " checkpointed " << checkpointed.value();
}

// A cut inside a column/row pair would carry a split tensor: refused before anything runs.
TEST(EngineTensor, ACutInsideAPairIsRefused) {
  LoadedModel m = load("mlp", "8x64");
  const NodeId inside = node_in(m.ir, "fc1") + 1;  // the ReLU between fc1 and fc2
  try {
    Engine engine(m, tensor_pipeline_plan(m.ir, Mode::kTraining, 8, 1, inside,
                                          {{"cpu:0", "cpu:1"}, {"cpu:0-1", "cpu"}}));
    FAIL() << "a cut inside a pair ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("split across a tensor-parallel group"), std::string::npos)
        << e.what();
  }
}

// GPT-2's Conv1D layers (addmm on a 2-D view, viewed back, cut in two halves): same losses as one device.
TEST(EngineTensor, Conv1DLayersTrainTheSame) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  const auto path = std::filesystem::temp_directory_path() / "partita_tensor_conv1d.pt";
  torch::manual_seed(11);
  torch::jit::Module module("Conv1D");
  for (const auto& [name, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"w1", {16, 64}}, {"b1", {64}}, {"w2", {32, 16}}, {"b2", {16}}})
    module.register_parameter(name, (torch::randn(shape) * 0.2).requires_grad_(), false);
  module.define(R"JIT(
def forward(self, x):
    b = x.size(0)
    t = x.size(1)
    h = torch.addmm(self.b1, x.view(-1, 16), self.w1).view(b, t, 64)
    a, g = h.split(32, 2)
    h = torch.relu(a) * torch.sigmoid(g)
    return torch.addmm(self.b2, h.reshape(-1, 32), self.w2).view(b, t, 16)
)JIT");
  module.save(path.string());
  const auto reference = reference_training(path.string(), "4x8x16", 20);
  LoadedModel m = load(path.string(), "4x8x16");
  Engine engine(m, tensor_plan(m.ir, Mode::kTraining, 4, 2, 2));
  expect_trains_like(engine, "4x8x16", reference, "conv1d 2-way");
}

// Workers that hold copies of the parameters (a GPU's path, on CPU workers through the test seam): each
// device's part of a gradient lands in its own copy and the engine gathers the copies.
TEST(EngineTensor, ParameterCopiesTrainTheSame) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  const std::string input = "4x32:i64:2048";
  const auto reference = reference_training("gpt", input, 10);
  LoadedModel m = load("gpt", input);
  EngineOptions options;
  options.cpu_parameter_copies = true;
  Engine engine(m, tensor_plan(m.ir, Mode::kTraining, 4, 2, 2), options);
  expect_trains_like(engine, input, reference, "gpt 2-way with parameter copies");
}

// Replicas of tensor groups (a tensor x data slot): each replica its share, gradients added up; uneven
// shares.
TEST(EngineTensor, ReplicasOfTensorGroupsMatchSingleDeviceTraining) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  struct Replicated {
    const char* model;
    const char* input;
    int microbatches;
    std::pair<int, int> shares;
  };
  for (const Replicated& c :
       {Replicated{"mlp", "8x64", 1, {3, 5}}, Replicated{"gpt", "4x32:i64:2048", 2, {1, 1}}}) {
    const int batch = static_cast<int>(parse_input_spec(c.input).shape[0]);
    const auto reference = reference_training(c.model, c.input, 20);
    LoadedModel m = load(c.model, c.input);
    Engine engine(m, replicated_tensor_plan(m.ir, Mode::kTraining, batch, c.microbatches, c.shares));
    const std::string what = std::string(c.model) + " 2 replicas of 2-way tensor groups";
    expect_trains_like(engine, c.input, reference, what);
  }
  // Inference: the outputs in sample order.
  LoadedModel m = load("gpt", "4x32:i64:2048");
  const auto inputs = make_inputs({parse_input_spec("4x32:i64:2048")}, 100);
  const torch::Tensor want = m.module.forward({inputs[0]}).toTensor();
  Engine engine(m, replicated_tensor_plan(m.ir, Mode::kInference, 4, 2, {1, 1}));
  StepInputs batch;
  batch.inputs = inputs;
  const auto out = engine.step(batch).outputs;
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(torch::allclose(out[0], want, 1e-4, 1e-5)) << (out[0] - want).abs().max().item<double>();
}

TEST(EngineTensor, InferenceReturnsTheModulesOutputs) {
  for (const auto& [name, input] : {std::pair{"mlp", "8x64"}, std::pair{"gpt", "4x32:i64:2048"}}) {
    LoadedModel m = load(name, input);
    const auto inputs = make_inputs({parse_input_spec(input)}, 100);
    const torch::Tensor want = m.module.forward({inputs[0]}).toTensor();
    Engine engine(m, tensor_plan(m.ir, Mode::kInference, static_cast<int>(want.size(0)), 2, 2));
    StepInputs batch;
    batch.inputs = inputs;
    const auto out = engine.step(batch).outputs;
    ASSERT_EQ(out.size(), 1u) << name;
    EXPECT_EQ(out[0].sizes(), want.sizes()) << name;
    EXPECT_TRUE(torch::allclose(out[0], want, 1e-4, 1e-5))
        << name << ": max |diff| " << (out[0] - want).abs().max().item<double>();
  }
}

// The runner drops its references to a step's outputs when it returns them (it held them until the next
// step began).
TEST(EngineTensor, KeepsNoTensorOfAnInferenceStep) {
  LoadedModel m = load("mlp", "8x64");
  for (int microbatches : {1, 2}) {
    Engine engine(m, tensor_plan(m.ir, Mode::kInference, 8, microbatches, 2));
    EXPECT_EQ(testing::bytes_left_by_a_step(engine, "8x64").value(), 0) << microbatches << " mb";
  }
}

TEST(EngineTensor, AGraphItCannotSplitIsRefusedBeforeAnythingRuns) {
  LoadedModel m = load("mlp", "8x64");
  try {
    Engine engine(m, tensor_plan(m.ir, Mode::kTraining, 8, 1, 4));  // fc3's 10 outputs, 4 ways
    FAIL() << "a 4-way split of 10 features ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fc3"), std::string::npos) << e.what();
  }
}

// One device fails at the start of its backward while the other waits for it inside a collective in its
// own backward (autograd's engine): the step fails with the first device's error, nothing hangs, and the
// engine runs the next step.
TEST(EngineTensor, ADeviceFailingMidStepStopsTheOtherAndTheEngineStaysUsable) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores";
  struct FailOnce : RuntimeObserver {
    std::atomic<bool> armed{true};
    void on_task_begin(const TaskEvent& e) override {
      if (e.kind == EngineTaskKind::kBackward && e.worker == 1 && armed.exchange(false))
        throw Error("injected failure on cpu:1");
    }
  } fail;
  LoadedModel m = load("gpt", "4x32:i64:2048");
  Engine engine(m, tensor_plan(m.ir, Mode::kTraining, 4, 1, 2));
  engine.add_observer(&fail);
  StepInputs batch;
  batch.inputs = make_inputs({parse_input_spec("4x32:i64:2048")}, 100);
  batch.targets = engine.make_targets(batch.inputs, 7);
  try {
    engine.step(batch);
    FAIL() << "the injected failure did not stop the step";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("injected failure on cpu:1"), std::string::npos) << e.what();
  }
  EXPECT_GT(engine.step(batch).loss, 0.0);
}

}  // namespace partita

#pragma once
// Shared by the engine tests: zoo models, and the plain single-device training that every parallel layout
// must reproduce (same losses, same parameters, up to floating-point reassociation).
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/optim.h>

#include <cmath>

#include "partita/runtime/engine.h"
#include "partita/search/graph_identity.h"
#include "partita/torch_bridge/memory_meter.h"

namespace partita::testing {

inline std::string zoo(const std::string& name) {
  return std::string(PARTITA_MODELS_DIR) + "/" + name + ".pt";
}

// The --input specs of a test's `input`: one spec, or several separated by ',' ("8x16,16x16:shared").
inline std::vector<InputSpec> specs_of(const std::string& input) {
  std::vector<InputSpec> specs;
  size_t start = 0;
  while (true) {
    const size_t comma = input.find(',', start);
    specs.push_back(
        parse_input_spec(input.substr(start, comma == std::string::npos ? comma : comma - start)));
    if (comma == std::string::npos) return specs;
    start = comma + 1;
  }
}

// A model file (a path with '/' or ".pt") or a zoo model's name.
inline LoadedModel load(const std::string& name, const std::string& input) {
  const bool path = name.find('/') != std::string::npos || (name.size() > 3 && name.ends_with(".pt"));
  LoadedModel m = load_model(path ? name : zoo(name));
  annotate_shapes(m, specs_of(input));
  return m;
}

inline bool two_cores() { return std::thread::hardware_concurrency() >= 2; }

struct ReferenceTraining {
  std::vector<double> losses;             // one per step
  std::vector<torch::Tensor> parameters;  // trainable ones, after the last step
};

// Plain single-device training with the TorchScript module itself: SGD (lr 0.01, momentum 0.9), the same
// batch every step (a copy of the inputs from seed 100, targets from seed 7, as the engine tests make them),
// so a working optimizer must lower the loss.
inline ReferenceTraining reference_training(const std::string& name, const std::string& input, int steps) {
  LoadedModel m = load(name, input);
  Plan one;
  one.graph = graph_identity(m.ir);
  one.mode = Mode::kTraining;
  one.optimizer = Optimizer::kSgdMomentum;
  one.global_batch = static_cast<int>(spec_batch(specs_of(input)));
  one.microbatches = 1;
  one.groups = {DeviceGroup{{"cpu:0"}, {one.global_batch}}};
  one.stages = {Stage{0, m.ir.num_nodes() - 1, 0}};
  const Engine helper(m, one);  // only to resolve the loss and targets the same way
  std::vector<torch::Tensor> params;
  for (const auto& p : m.parameters) {
    if (p.requires_grad()) params.push_back(p);
  }
  torch::optim::SGD opt(params, torch::optim::SGDOptions(0.01).momentum(0.9));
  const auto inputs = make_inputs(specs_of(input), 100);
  const auto targets = helper.make_targets(inputs, 7);
  ReferenceTraining run;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    // A fresh copy each step, as from a data loader: a model that updates its input in place (scales_input)
    // would otherwise train on a different batch every step.
    std::vector<c10::IValue> args;
    for (const auto& t : inputs) args.emplace_back(t.clone());
    const c10::IValue result = m.module.forward(args);
    // The loss reads the first output: a tuple's first element, a returned dict's first value.
    const torch::Tensor out = result.isTuple()         ? result.toTupleRef().elements()[0].toTensor()
                              : result.isGenericDict() ? result.toGenericDict().begin()->value().toTensor()
                                                       : result.toTensor();
    auto loss = slice_loss(helper.loss_kind(), out, targets, one.global_batch);
    loss.backward();
    opt.step();
    run.losses.push_back(loss.item<double>());
  }
  for (const auto& p : params) run.parameters.push_back(p.detach().clone());
  return run;
}

// The losses of `steps` training steps of `engine` on the batch reference_training uses (inputs from seed
// 100, targets from seed 7).
inline std::vector<double> train_losses(Engine& engine, const std::string& input, int steps) {
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    StepInputs batch;
    batch.inputs = make_inputs(specs_of(input), 100);
    batch.targets = engine.make_targets(batch.inputs, 7);
    losses.push_back(engine.step(batch).loss);
  }
  return losses;
}

// `got` reproduces the reference's losses step by step (relative difference <= 1e-4), and the reference
// learned (its loss went down), so equal losses mean working training.
inline void expect_same_losses(const std::vector<double>& got, const std::vector<double>& reference,
                               const std::string& what) {
  ASSERT_EQ(got.size(), reference.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_LE(std::abs(got[i] - reference[i]), 1e-4 * std::abs(reference[i]) + 1e-7)
        << what << " step " << i << ": " << got[i] << " vs " << reference[i];
  }
  EXPECT_LT(reference.back(), reference.front()) << what << ": training should reduce the loss";
}

// The bytes a second training step of `engine` on `input` allocates at its peak beyond what lives before it
// (the first step allocates the optimizer state), through partita's counting CPU allocator.
inline Bytes measured_step_peak(Engine& engine, const std::string& input) {
  MemoryMeter& meter = MemoryMeter::install();
  StepInputs batch;
  batch.inputs = make_inputs(specs_of(input), 1);
  batch.targets = engine.make_targets(batch.inputs);
  engine.step(batch);
  meter.reset_peak();
  const Bytes before = meter.current_bytes();
  engine.step(batch);
  return meter.peak_bytes() - before;
}

// Inference: the bytes of CPU tensors one step of `engine` on `input` leaves alive once its result is dropped
// (counted by partita's allocator from just before the step): 0 when the engine keeps none of the step's
// tensors, so the next step starts from the memory the model predicts.
inline Bytes bytes_left_by_a_step(Engine& engine, const std::string& input) {
  MemoryMeter& meter = MemoryMeter::install();
  const StepInputs batch{make_inputs(specs_of(input), 1), {}};
  const Bytes before = meter.current_bytes();
  (void)engine.step(batch);
  return meter.current_bytes() - before;
}

}  // namespace partita::testing

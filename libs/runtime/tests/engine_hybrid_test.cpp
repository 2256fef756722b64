// Hybrid plans in one process: a pipeline whose stages run on groups of devices with their own batch shares.
// Each device of a stage sends the next stage's devices the samples they hold (resharding), gradients come
// back the same way, and each stage's replicas combine their parameter gradients.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "hybrid_layouts.h"
#include "partita/core/error.h"
#include "partita/graph/analysis.h"
#include "partita/runtime/engine.h"
#include "partita/search/graph_identity.h"
#include "reference_training.h"

namespace partita {
namespace {

using namespace partita::testing;

std::vector<double> hybrid_losses(const std::string& name, const std::string& input, int steps,
                                  const HybridLayout& layout, EngineOptions options = {}) {
  LoadedModel m = load(name, input);
  const int batch = static_cast<int>(parse_input_spec(input).shape[0]);
  const NodeId cut = splittable_cut(m.ir);
  Engine engine(m, hybrid_plan(m.ir, Mode::kTraining, batch, batch / 4, cut, layout.first, layout.second),
                options);
  return train_losses(engine, input, steps);
}

TEST(EngineHybrid, TrainingMatchesOneDeviceFor20Steps) {
  for (const auto& [model, input] :
       {std::pair{"mlp", "8x64"}, {"cnn", "8x3x32x32"}, {"gpt", "8x32:i64:2048"}}) {
    const auto reference = reference_training(model, input, 20).losses;
    for (const HybridLayout& layout : kHybridLayouts)
      expect_same_losses(hybrid_losses(model, input, 20, layout), reference,
                         std::string(model) + ", " + layout.name);
  }
}

TEST(EngineHybrid, CheckpointedAndOffloadingStagesKeepTheMath) {
  // A checkpointed stage recomputes its forward after its gradients arrive; activation offload copies what
  // a stage saves to the host and back.
  for (const Checkpointing c : {Checkpointing::kFull, Checkpointing::kNone}) {
    LoadedModel m = load("cnn", "8x3x32x32");
    Plan p = hybrid_plan(m.ir, Mode::kTraining, 8, 2, splittable_cut(m.ir), kHybridLayouts[2].first,
                         kHybridLayouts[2].second);
    p.stages[0].checkpointing = c;
    p.stages[1].checkpointing = c;
    if (c == Checkpointing::kNone) p.stages[0].offload = Offload::kActivations;
    Engine engine(m, p);
    expect_same_losses(train_losses(engine, "8x3x32x32", 12),
                       reference_training("cnn", "8x3x32x32", 12).losses,
                       c == Checkpointing::kFull ? "checkpointed" : "activation offload");
  }
}

TEST(EngineHybrid, DeviceCopiesOfSharedParametersKeepTheMath) {
  // Workers with memory of their own (the GPU path, on CPU workers): a stage's replicas read host
  // parameters through copies whose gradients are gathered.
  EngineOptions copies;
  copies.cpu_parameter_copies = true;
  expect_same_losses(hybrid_losses("cnn", "8x3x32x32", 12, kHybridLayouts[2], copies),
                     reference_training("cnn", "8x3x32x32", 12).losses, "cnn with device copies");
}

TEST(EngineHybrid, InferenceOutputsMatchTheModule) {
  LoadedModel m = load("cnn", "8x3x32x32");
  const NodeId cut = best_cut_points(m.ir, 1)[0].after_node;
  const auto inputs = make_inputs({parse_input_spec("8x3x32x32")}, 100);
  const torch::Tensor expected = m.module.forward({inputs[0]}).toTensor();
  for (const HybridLayout& layout : kHybridLayouts) {
    Engine engine(m, hybrid_plan(m.ir, Mode::kInference, 8, 2, cut, layout.first, layout.second));
    StepInputs in;
    in.inputs = inputs;
    const StepResult r = engine.step(in);
    ASSERT_EQ(r.outputs.size(), 1u) << layout.name;
    EXPECT_TRUE(torch::allclose(r.outputs[0], expected, 1e-5, 1e-6)) << layout.name;
  }
}

TEST(EngineHybrid, RefusesACutThatCarriesAValueItCannotSplitByTheBatch) {
  // The GPT's attention reads the batch size as a number (x.size()); a cut inside a block sends it on, and
  // each device of the next stage would need its own.
  LoadedModel m = load("gpt", "4x32:i64:2048");
  const std::vector<bool> cuts = hybrid_cuts(m.ir);
  const auto it = std::find(cuts.begin(), cuts.end(), false);
  const NodeId cut = it == cuts.end() ? kNoNode : static_cast<NodeId>(it - cuts.begin());
  ASSERT_NE(cut, kNoNode) << "no cut of the GPT sends a batch-dependent value that is not batch-major";
  try {
    Engine engine(
        m, hybrid_plan(m.ir, Mode::kTraining, 4, 1, cut, kHybridLayouts[0].first, kHybridLayouts[0].second));
    FAIL() << "a hybrid plan with an unsplittable value crossing its cut ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be split between the stages' devices"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace partita

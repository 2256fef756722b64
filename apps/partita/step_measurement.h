#pragma once
// The real step that `partita estimate --measure` compares predictions with: a forward pass (inference, no
// grad), or a TrainingStep (training), run by partita's executor at the current intra-op thread count. Each
// timed training step starts from the same parameter values (written back outside the clock), so every step
// times the same arithmetic as the profiler's in-situ runs.
#include <memory>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/script.h>

#include "partita/core/units.h"
#include "partita/cost/loss.h"
#include "partita/cost/memory.h"
#include "partita/torch_bridge/executor.h"
#include "partita/torch_bridge/timing.h"

namespace partita::app {

// A training step as `partita run` takes it on one device: forward, the loss it trains with (runtime/loss.h;
// targets drawn once, seed 12 as the baseline's), backward, one step of the optimizer it makes
// (runtime/optimizer.h, at that optimizer's default learning rate), then every gradient set to none (as the
// engine does before its next step).
class TrainingStep {
 public:
  // Throws partita::Error when the model has no batched input to draw targets for or its first output is not
  // a floating-point tensor.
  TrainingStep(const Executor& executor, const std::vector<c10::IValue>& inputs, LossKind loss,
               Optimizer optimizer);
  ~TrainingStep();
  TrainingStep(const TrainingStep&) = delete;
  TrainingStep& operator=(const TrainingStep&) = delete;

  LossKind loss_kind() const { return loss_kind_; }
  Optimizer optimizer_kind() const { return optimizer_kind_; }
  // The loss of a forward's outputs (the graph's outputs in order; it reads the first tensor of the first).
  torch::Tensor loss(const std::vector<c10::IValue>& outputs) const;
  // The optimizer step over the parameters' gradients, then the gradients set to none.
  void update();
  // Forward, loss, backward and update.
  void run(const std::vector<c10::IValue>& inputs);

 private:
  const Executor& executor_;
  LossKind loss_kind_;
  Optimizer optimizer_kind_;
  torch::Tensor targets_;
  int64_t normalizer_ = 1;  // the batch input's rows: the loss is their mean
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

struct StepMeasurement {
  Seconds median{0};
  Seconds min{0};
  int repeats = 0;
  Bytes peak{0};  // highest live CPU tensor bytes during one step (0 when the meter is not installed)
  bool peak_measured = false;
};

// Runs one step (`train`'s, else inference) under the memory meter (when installed), then times the step
// (timing's warm-up, repeats, budget). The parameters end as they were after the memory step.
StepMeasurement measure_step(const Executor& executor, const std::vector<c10::IValue>& inputs,
                             TrainingStep* train, const TimingOptions& timing);

class ParameterSnapshot;

// The same steps, one at a time, for a caller that interleaves them with another measurement (partita
// estimate passes step() as OpProfileOptions::between_in_situ_runs, so the real step and the profiler's
// in-situ runs sample the same stretch of a machine whose speed drifts for seconds at a time). Each step is
// timed on its own and starts from the parameter values at construction: they are put back after every
// step, outside the clock (a caller must leave them as it found them, as the op profiler does). CPU only:
// nothing waits for a device.
class InterleavedSteps {
 public:
  // `train`: the training step to run (outlives this), null: inference.
  InterleavedSteps(const Executor& executor, const std::vector<c10::IValue>& inputs, TrainingStep* train);
  ~InterleavedSteps();
  InterleavedSteps(const InterleavedSteps&) = delete;
  InterleavedSteps& operator=(const InterleavedSteps&) = delete;

  // Runs one step; keeps its time when `timed` (false: a warm-up).
  void step(bool timed);
  int timed_steps() const { return static_cast<int>(samples_.size()); }
  // Puts the parameters back, runs one step under the memory meter (when installed) and returns the median
  // and minimum of the kept times (0 when none were kept). Call once, last.
  StepMeasurement finish();

 private:
  const Executor& executor_;
  std::vector<c10::IValue> inputs_;
  TrainingStep* train_;
  std::unique_ptr<ParameterSnapshot> initial_;
  std::vector<double> samples_;
};

}  // namespace partita::app

#pragma once
// The real step that `partita estimate --measure` compares predictions with: a forward pass (inference, no
// grad), or forward + loss (sum of the float outputs) + backward + a plain SGD update with gradients set to
// none afterwards (training), run by partita's executor at the current intra-op thread count. Each timed
// training step starts from the same parameter values (written back outside the clock), so the steps do not
// drift towards the inf/NaN weights that SGD on this unbounded loss reaches.
#include <memory>
#include <vector>

#include <torch/script.h>

#include "partita/core/units.h"
#include "partita/torch_bridge/executor.h"
#include "partita/torch_bridge/timing.h"

namespace partita::app {

struct StepMeasurement {
  Seconds median{0};
  Seconds min{0};
  int repeats = 0;
  Bytes peak{0};  // highest live CPU tensor bytes during one step (0 when the meter is not installed)
  bool peak_measured = false;
};

// Runs one step under the memory meter (when installed), then times the step (timing's warm-up, repeats,
// budget). The parameters end as they were after the memory step.
StepMeasurement measure_step(const Executor& executor, const std::vector<c10::IValue>& inputs, bool train,
                             const TimingOptions& timing);

class ParameterSnapshot;

// The same steps, one at a time, for a caller that interleaves them with another measurement (partita
// estimate passes step() as OpProfileOptions::between_in_situ_runs, so the real step and the profiler's
// in-situ runs sample the same stretch of a machine whose speed drifts for seconds at a time). Each step is
// timed on its own and starts from the parameter values at construction: they are put back after every
// step, outside the clock (a caller must leave them as it found them, as the op profiler does). CPU only:
// nothing waits for a device.
class InterleavedSteps {
 public:
  InterleavedSteps(const Executor& executor, const std::vector<c10::IValue>& inputs, bool train);
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
  bool train_;
  std::unique_ptr<ParameterSnapshot> initial_;
  std::vector<double> samples_;
};

// The update of the training step: for every parameter that requires grad and has one, p -= lr * grad, then
// grad = none (the next backward allocates anew). No autograd recording.
void sgd_update(const std::vector<torch::Tensor>& params);

}  // namespace partita::app

#pragma once
// The real step that `partita estimate --measure` compares predictions with: a forward pass (inference, no
// grad), or forward + loss (sum of the float outputs) + backward + a plain SGD update with gradients set to
// none afterwards (training), run by partita's executor at the current intra-op thread count.
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

// Times the step (timing's warm-up, repeats, budget) and then runs one more step under the memory meter.
StepMeasurement measure_step(const Executor& executor, const std::vector<c10::IValue>& inputs, bool train,
                             const TimingOptions& timing);

// The loss and SGD update alone (what a training step adds to the nodes' forward and backward): timed on
// copies of the trainable parameters with random gradients.
Seconds measure_update(const Executor& executor, const TimingOptions& timing);

}  // namespace partita::app

#pragma once
// Per-stage task order of a pipelined step. Torch-free.
#include <vector>

#include "partita/search/plan.h"

namespace partita {

struct ScheduledTask {
  bool backward = false;
  int microbatch = 0;
  friend bool operator==(const ScheduledTask&, const ScheduledTask&) = default;
};

// The order in which stage `stage` of `stages` runs the forward (and, when training, backward) of
// `microbatches` microbatches. GPipe: every forward, then every backward. 1F1B: stage s first runs
// min(stages-1-s, m) forwards (warm-up), then alternates one forward and one backward, then drains the
// backwards; so at most stages-s microbatches' activations are alive on stage s, against m under GPipe.
// Backwards run in microbatch order.
std::vector<ScheduledTask> stage_schedule(Schedule schedule, int stage, int stages, int microbatches,
                                          bool training);

}  // namespace partita

#include "partita/runtime/schedule.h"

#include <algorithm>

namespace partita {

std::vector<ScheduledTask> stage_schedule(Schedule schedule, int stage, int stages, int microbatches,
                                          bool training) {
  std::vector<ScheduledTask> tasks;
  if (!training) {
    for (int m = 0; m < microbatches; ++m) tasks.push_back({false, m});
    return tasks;
  }
  if (schedule == Schedule::kGPipe) {
    for (int m = 0; m < microbatches; ++m) tasks.push_back({false, m});
    for (int m = 0; m < microbatches; ++m) tasks.push_back({true, m});
    return tasks;
  }
  const int warmup = std::min(stages - 1 - stage, microbatches);
  for (int m = 0; m < warmup; ++m) tasks.push_back({false, m});
  for (int i = 0; i < microbatches - warmup; ++i) {
    tasks.push_back({false, warmup + i});
    tasks.push_back({true, i});
  }
  for (int m = microbatches - warmup; m < microbatches; ++m) tasks.push_back({true, m});
  return tasks;
}

}  // namespace partita

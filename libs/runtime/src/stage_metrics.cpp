#include "partita/runtime/stage_metrics.h"

namespace partita {

void StageMetrics::on_task_end(const TaskEvent& event) {
  if (event.worker < 0 || (event.kind != EngineTaskKind::kForward && event.kind != EngineTaskKind::kBackward))
    return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (static_cast<int>(workers_.size()) <= event.worker) workers_.resize(event.worker + 1);
  WorkerMetrics& w = workers_[event.worker];
  w.worker = event.worker;
  w.stage = event.stage;
  w.device = event.device;
  w.busy += Seconds(std::chrono::duration<double>(event.end - event.begin).count());
  ++w.tasks;
}

void StageMetrics::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  workers_.clear();
}

std::vector<WorkerMetrics> StageMetrics::workers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return workers_;
}

}  // namespace partita

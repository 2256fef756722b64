#pragma once
// The monitor's numbers: per worker busy time (forward + backward tasks) and per stage averages over the
// steps seen. Thread-safe.
#include <mutex>
#include <vector>

#include "partita/core/units.h"
#include "partita/runtime/observer.h"

namespace partita {

struct WorkerMetrics {
  int worker = 0;
  int stage = 0;
  std::string device;
  Seconds busy{0};  // total forward + backward time observed
  int tasks = 0;
};

class StageMetrics : public RuntimeObserver {
 public:
  void on_task_end(const TaskEvent& event) override;
  // Forget everything (e.g. after warm-up steps).
  void reset();
  std::vector<WorkerMetrics> workers() const;

 private:
  mutable std::mutex mutex_;
  std::vector<WorkerMetrics> workers_;
};

}  // namespace partita

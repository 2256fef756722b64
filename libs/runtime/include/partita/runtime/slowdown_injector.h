#pragma once
// Fault injection for testing dynamic rebalancing: makes one device `factor` times slower from a given step
// on, as if something else took part of its time. Before each forward or backward task on that device it
// sleeps (factor - 1) x the unslowed duration of the device's previous task of the same kind, inside the
// task's begin/end (so monitors and traces see the slowed task). The slowdown follows the device, not the
// stage: after a rebalance the device stays slow, as a real slowed device would.
#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "partita/runtime/observer.h"

namespace partita {

// What the user asked for: `--inject-slowdown STAGE:FACTOR:STEP`.
struct SlowdownSpec {
  int stage = 0;        // plan stage whose (first) device slows down
  double factor = 2.0;  // > 1
  int step = 0;         // first slowed step (0-based, counting every step run, warm-up included)
};
// Parses "0:2:10"; throws partita::Error naming the text and the expected form.
SlowdownSpec parse_slowdown_spec(const std::string& text);

class SlowdownInjector : public RuntimeObserver {
 public:
  SlowdownInjector(std::string device, double factor, int first_step);
  // The step about to run (the caller's count, which goes on across engines).
  void set_step(int step);
  void on_task_begin(const TaskEvent& event) override;
  void on_task_end(const TaskEvent& event) override;
  const std::string& device() const { return device_; }

 private:
  struct Lane {  // one (device, task kind): tasks of a lane run one at a time
    std::chrono::nanoseconds last_unslowed{0};
    std::chrono::nanoseconds slept{0};
  };
  std::string device_;
  double factor_;
  int first_step_;
  std::mutex mutex_;
  int step_ = 0;
  std::map<int, Lane> lanes_;  // by EngineTaskKind
};

}  // namespace partita

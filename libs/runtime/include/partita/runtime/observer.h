#pragma once
// Runtime observers: every task the engine runs (a stage's forward or backward of one microbatch, a transfer,
// a gradient reduction, the optimizer step) is reported as begin/end events. The monitor, the Chrome-trace
// writer and the energy meter plug in here. Observers are called from worker threads concurrently: an
// implementation must be thread-safe.
#include <chrono>
#include <string>
#include <vector>

namespace partita {

enum class EngineTaskKind { kForward, kBackward, kTransfer, kGradientReduce, kOptimizer };
std::string_view engine_task_kind_name(EngineTaskKind kind);  // "forward", "backward", ...

struct TaskEvent {
  EngineTaskKind kind = EngineTaskKind::kForward;
  int stage = 0;        // plan stage index (-1 for step-wide tasks such as the optimizer)
  int worker = 0;       // engine worker index (one per device of the plan)
  std::string device;   // plan device id ("cpu:0")
  int microbatch = -1;  // -1 for step-wide tasks
  int step = 0;
  std::chrono::steady_clock::time_point begin;
  std::chrono::steady_clock::time_point end;  // set on on_task_end
};

class RuntimeObserver {
 public:
  virtual ~RuntimeObserver() = default;
  virtual void on_task_begin(const TaskEvent& /*event*/) {}
  virtual void on_task_end(const TaskEvent& /*event*/) {}
};

// Stamps the event's begin (end) with the steady clock and tells every observer, in order.
inline void notify_task(const std::vector<RuntimeObserver*>& observers, TaskEvent& e, bool begin) {
  if (begin) {
    e.begin = std::chrono::steady_clock::now();
    for (auto* o : observers) o->on_task_begin(e);
  } else {
    e.end = std::chrono::steady_clock::now();
    for (auto* o : observers) o->on_task_end(e);
  }
}

}  // namespace partita

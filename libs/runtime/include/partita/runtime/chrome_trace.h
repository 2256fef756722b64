#pragma once
// Records the engine's tasks and writes them as Chrome trace event JSON (open in Perfetto or
// chrome://tracing): one process "measured" with a thread per worker; complete events ("ph": "X") with
// microsecond timestamps.
#include <mutex>
#include <string>
#include <vector>

#include "partita/core/json_io.h"
#include "partita/runtime/observer.h"

namespace partita {

class ChromeTraceObserver : public RuntimeObserver {
 public:
  void on_task_end(const TaskEvent& event) override;
  // {"traceEvents": [...], "displayTimeUnit": "ms", "origin_us": O}; `process` names the process row; ts
  // counts from the first task's begin, which is O microseconds on std::chrono::steady_clock (absent when
  // nothing was recorded).
  Json to_json(const std::string& process = "measured") const;
  size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::vector<TaskEvent> events_;
};

// Appends another trace's events (e.g. the simulator's) under a new process id so both timelines show side by
// side. Both must be {"traceEvents": [...]} objects.
void merge_trace(Json& into, const Json& other, int pid, const std::string& process_name);

}  // namespace partita

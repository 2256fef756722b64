#include "partita/runtime/chrome_trace.h"

#include <algorithm>
#include <map>

namespace partita {

std::string_view engine_task_kind_name(EngineTaskKind kind) {
  switch (kind) {
    case EngineTaskKind::kForward:
      return "forward";
    case EngineTaskKind::kBackward:
      return "backward";
    case EngineTaskKind::kTransfer:
      return "transfer";
    case EngineTaskKind::kGradientReduce:
      return "gradient_reduce";
    case EngineTaskKind::kOptimizer:
      return "optimizer";
  }
  return "?";
}

void ChromeTraceObserver::on_task_end(const TaskEvent& event) {
  std::lock_guard<std::mutex> lock(mutex_);
  events_.push_back(event);
}

size_t ChromeTraceObserver::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return events_.size();
}

Json ChromeTraceObserver::to_json(const std::string& process) const {
  std::lock_guard<std::mutex> lock(mutex_);
  Json events = Json::array();
  events.push_back({{"ph", "M"}, {"pid", 1}, {"name", "process_name"}, {"args", {{"name", process}}}});
  if (events_.empty()) return Json{{"traceEvents", events}, {"displayTimeUnit", "ms"}};
  auto t0 = events_.front().begin;
  for (const auto& e : events_) t0 = std::min(t0, e.begin);
  std::map<int, std::string> threads;  // tid -> name
  for (const auto& e : events_) {
    const int tid = e.worker < 0 ? 1000 : e.worker;
    threads[tid] = e.worker < 0 ? "host" : "worker " + std::to_string(e.worker) + " (" + e.device + ")";
    const auto us = [&](auto t) { return std::chrono::duration<double, std::micro>(t - t0).count(); };
    std::string name(engine_task_kind_name(e.kind));
    if (e.microbatch >= 0)
      name = (e.kind == EngineTaskKind::kForward    ? "F"
              : e.kind == EngineTaskKind::kBackward ? "B"
                                                    : name) +
             std::to_string(e.microbatch);
    events.push_back(
        {{"ph", "X"},
         {"pid", 1},
         {"tid", tid},
         {"name", name},
         {"cat", std::string(engine_task_kind_name(e.kind))},
         {"ts", us(e.begin)},
         {"dur", us(e.end) - us(e.begin)},
         {"args",
          {{"stage", e.stage}, {"microbatch", e.microbatch}, {"step", e.step}, {"device", e.device}}}});
  }
  for (const auto& [tid, name] : threads) {
    events.push_back(
        {{"ph", "M"}, {"pid", 1}, {"tid", tid}, {"name", "thread_name"}, {"args", {{"name", name}}}});
  }
  // Where ts 0 is on the steady clock, which Linux shares between the processes of a machine: traces of
  // the ranks of one job line up by it.
  return Json{{"traceEvents", events},
              {"displayTimeUnit", "ms"},
              {"origin_us", std::chrono::duration<double, std::micro>(t0.time_since_epoch()).count()}};
}

void merge_trace(Json& into, const Json& other, int pid, const std::string& process_name) {
  auto& events = into["traceEvents"];
  events.push_back({{"ph", "M"}, {"pid", pid}, {"name", "process_name"}, {"args", {{"name", process_name}}}});
  for (Json e : other.at("traceEvents")) {
    if (e.value("name", "") == "process_name") continue;
    e["pid"] = pid;
    events.push_back(std::move(e));
  }
}

}  // namespace partita

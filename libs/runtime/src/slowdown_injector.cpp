#include "partita/runtime/slowdown_injector.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <thread>

#include "partita/core/error.h"

namespace partita {

SlowdownSpec parse_slowdown_spec(const std::string& text) {
  SlowdownSpec spec;
  char tail = 0;
  const int fields = std::sscanf(text.c_str(), "%d:%lf:%d%c", &spec.stage, &spec.factor, &spec.step, &tail);
  PARTITA_CHECK(fields == 3, "--inject-slowdown '", text, "' must be STAGE:FACTOR:STEP, e.g. 0:2:10");
  PARTITA_CHECK(spec.stage >= 0, "--inject-slowdown '", text, "': stage must be >= 0");
  PARTITA_CHECK(std::isfinite(spec.factor) && spec.factor >= 1.0, "--inject-slowdown '", text,
                "': factor must be at least 1, got ", spec.factor);
  PARTITA_CHECK(spec.step >= 0, "--inject-slowdown '", text, "': step must be >= 0");
  return spec;
}

SlowdownInjector::SlowdownInjector(std::string device, double factor, int first_step)
    : device_(std::move(device)), factor_(factor), first_step_(first_step) {
  PARTITA_CHECK(std::isfinite(factor) && factor >= 1.0, "slowdown factor must be at least 1, got ", factor);
}

void SlowdownInjector::set_step(int step) {
  std::lock_guard<std::mutex> lock(mutex_);
  step_ = step;
}

void SlowdownInjector::on_task_begin(const TaskEvent& event) {
  if (event.device != device_ ||
      (event.kind != EngineTaskKind::kForward && event.kind != EngineTaskKind::kBackward))
    return;
  std::chrono::nanoseconds sleep{0};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Lane& lane = lanes_[static_cast<int>(event.kind)];
    if (step_ >= first_step_) {
      sleep = std::chrono::nanoseconds(
          static_cast<int64_t>((factor_ - 1.0) * static_cast<double>(lane.last_unslowed.count())));
    }
  }
  const auto start = std::chrono::steady_clock::now();
  if (sleep.count() > 0) std::this_thread::sleep_for(sleep);
  const auto slept = std::chrono::steady_clock::now() - start;
  std::lock_guard<std::mutex> lock(mutex_);
  lanes_[static_cast<int>(event.kind)].slept = std::chrono::duration_cast<std::chrono::nanoseconds>(slept);
}

void SlowdownInjector::on_task_end(const TaskEvent& event) {
  if (event.device != device_ ||
      (event.kind != EngineTaskKind::kForward && event.kind != EngineTaskKind::kBackward))
    return;
  std::lock_guard<std::mutex> lock(mutex_);
  Lane& lane = lanes_[static_cast<int>(event.kind)];
  lane.last_unslowed =
      std::chrono::duration_cast<std::chrono::nanoseconds>(event.end - event.begin) - lane.slept;
  lane.slept = std::chrono::nanoseconds{0};
}

}  // namespace partita

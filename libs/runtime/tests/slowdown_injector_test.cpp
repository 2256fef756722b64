#include "partita/runtime/slowdown_injector.h"

#include <thread>

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Runs one task of `work` on `device` through the injector the way the engine reports it; returns the
// task's begin-to-end duration.
Clock::duration run_task(SlowdownInjector& injector, const std::string& device, milliseconds work) {
  TaskEvent e{EngineTaskKind::kForward, 0, 0, device, 0, 0, {}, {}};
  e.begin = Clock::now();
  injector.on_task_begin(e);
  std::this_thread::sleep_for(work);
  e.end = Clock::now();
  injector.on_task_end(e);
  return e.end - e.begin;
}

TEST(SlowdownInjector, StretchesTheDevicesTasksFromTheStepOn) {
  SlowdownInjector injector("cpu:0", 3.0, /*first_step=*/1);
  injector.set_step(0);
  EXPECT_LT(run_task(injector, "cpu:0", milliseconds(20)), milliseconds(40));  // not yet
  injector.set_step(1);
  // Each slowed task lasts at least factor x the unslowed one (sleeps never end early), and the unslowed
  // time it learns does not compound: the third task is not 9x.
  for (int i = 0; i < 3; ++i) {
    const auto took = run_task(injector, "cpu:0", milliseconds(20));
    EXPECT_GE(took, milliseconds(60));
    EXPECT_LT(took, milliseconds(170));
  }
  EXPECT_LT(run_task(injector, "cpu:1", milliseconds(20)), milliseconds(40));  // other devices untouched
}

TEST(SlowdownInjector, ParsesTheOption) {
  const SlowdownSpec s = parse_slowdown_spec("1:2.5:10");
  EXPECT_EQ(s.stage, 1);
  EXPECT_DOUBLE_EQ(s.factor, 2.5);
  EXPECT_EQ(s.step, 10);
  EXPECT_THROW(parse_slowdown_spec("1:2.5"), Error);
  EXPECT_THROW(parse_slowdown_spec("1:2:10x"), Error);
  EXPECT_THROW(parse_slowdown_spec("1:0.5:10"), Error);
  EXPECT_THROW(parse_slowdown_spec("-1:2:10"), Error);
  EXPECT_THROW(parse_slowdown_spec("a:b:c"), Error);
}

}  // namespace
}  // namespace partita

#include "../src/spin_condition.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "partita/core/error.h"

namespace partita::detail {
namespace {

using namespace std::chrono_literals;

// Two threads hand a turn back and forth many times: a lost wake-up (a notify between a spinning waiter's
// last look and its sleep) would hang here, a spurious return would break the strict alternation.
TEST(SpinCondition, TwoThreadsAlternateWithoutLosingAWakeUp) {
  std::mutex mutex;
  SpinCondition turn_changed;
  int turn = 0;  // whose turn: 0 or 1
  int passes = 0;
  constexpr int kRounds = 20000;
  auto player = [&](int me) {
    for (int i = 0; i < kRounds; ++i) {
      std::unique_lock<std::mutex> lock(mutex);
      turn_changed.wait(lock, [&] { return turn == me; });
      ASSERT_EQ(turn, me);
      ++passes;
      turn = 1 - me;
      lock.unlock();
      turn_changed.notify_all();
    }
  };
  std::thread other(player, 1);
  player(0);
  other.join();
  EXPECT_EQ(passes, 2 * kRounds);
}

// A waiter whose partner comes long after the spin window has gone to sleep on the condition variable; the
// notify still wakes it.
TEST(SpinCondition, AWaiterAsleepPastTheWindowIsWoken) {
  ASSERT_LT(spin_window(), 20ms);
  std::mutex mutex;
  SpinCondition ready_changed;
  bool ready = false;
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mutex);
    ready_changed.wait(lock, [&] { return ready; });
    returned = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(returned) << "the wait returned before its condition held";
  {
    std::lock_guard<std::mutex> lock(mutex);
    ready = true;
  }
  ready_changed.notify_one();
  waiter.join();
  EXPECT_TRUE(returned);
}

// A notify for another condition (the state the waiter looks for has not changed) does not end the wait.
TEST(SpinCondition, ANotifyWithoutTheConditionKeepsWaiting) {
  std::mutex mutex;
  SpinCondition changed;
  int value = 0;
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&] { return value == 2; });
    returned = true;
  });
  {
    std::lock_guard<std::mutex> lock(mutex);
    value = 1;
  }
  changed.notify_all();
  std::this_thread::sleep_for(30ms);
  EXPECT_FALSE(returned);
  {
    std::lock_guard<std::mutex> lock(mutex);
    value = 2;
  }
  changed.notify_all();
  waiter.join();
  EXPECT_TRUE(returned);
}

TEST(SpinCondition, TheWindowComesFromPartitaSpinUs) {
  EXPECT_EQ(parse_spin_window(nullptr), 50us);
  EXPECT_EQ(parse_spin_window(""), 50us);
  EXPECT_EQ(parse_spin_window("0"), 0us);
  EXPECT_EQ(parse_spin_window("200"), 200us);
  EXPECT_EQ(parse_spin_window("10000"), 10000us);
  for (const char* bad : {"-1", "10001", "2.5", "abc", "50us", " 50", "99999999999"}) {
    try {
      parse_spin_window(bad);
      ADD_FAILURE() << "accepted PARTITA_SPIN_US='" << bad << "'";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(std::string("PARTITA_SPIN_US='") + bad + "'"), std::string::npos) << what;
      EXPECT_NE(what.find("from 0 (sleep at once) to 10000"), std::string::npos) << what;
    }
  }
}

}  // namespace
}  // namespace partita::detail

#pragma once
// A condition variable whose waiters spin briefly before they sleep: how engine workers of one process wait
// for each other (a stage's input, a tensor-parallel collective, the start and end of a step).
//
// Why: on the 2-core development VM a thread asleep on a std::condition_variable ran again 13-45 us after
// the notify (a round trip through two sleeping threads took 25-90 us, 2026-12-05), which is most of a
// small model's step when a tensor-parallel MLP meets its partner a dozen times per step. A waiter that is
// still spinning sees the change within about a microsecond, and the notifier skips the wake-up syscall.
// Spinning costs the waiter's core for at most the spin window; past it the waiter sleeps as before. That
// bounds the waste at twice the cost of sleeping when the partner comes late (a window near the wake-up
// latency), the policy the processes' shared-memory exchange follows as well (shared_memory_segment.h).
//
// The window is PARTITA_SPIN_US microseconds (read once; default 50, 0 = sleep at once, at most 10000):
// lower it where workers share cores with other busy threads. Usage is std::condition_variable's: change
// the state under the mutex, then notify; wait(lock, done) returns holding the lock with done() true.
// Torch-free.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace partita::detail {

// Tells the core this is a spin loop (less power, no memory-order mis-speculation on exit).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// A spin window from the text of PARTITA_SPIN_US: null or empty gives the default, 50 us. Throws
// partita::Error, naming the value, on one that is not a whole number of microseconds in [0, 10000].
std::chrono::microseconds parse_spin_window(const char* text);
// This process's spin window, PARTITA_SPIN_US read once (the engine reads it before it starts its workers,
// so a bad value is refused before anything runs).
std::chrono::microseconds spin_window();

class SpinCondition {
 public:
  void notify_one() {
    signals_.fetch_add(1, std::memory_order_release);
    cv_.notify_one();
  }
  void notify_all() {
    signals_.fetch_add(1, std::memory_order_release);
    cv_.notify_all();
  }

  template <typename Done>
  void wait(std::unique_lock<std::mutex>& lock, Done done) {
    if (done()) return;
    const auto window = spin_window();
    if (window.count() > 0) {
      const auto until = std::chrono::steady_clock::now() + window;
      for (;;) {
        // Watch the notify counter without the lock (the notifier needs it), then look at the state.
        const uint64_t seen = signals_.load(std::memory_order_acquire);
        lock.unlock();
        bool expired = false;
        for (int i = 1; signals_.load(std::memory_order_acquire) == seen; ++i) {
          cpu_relax();
          if (i % 64 == 0) {
            if (std::chrono::steady_clock::now() >= until) {
              expired = true;
              break;
            }
            std::this_thread::yield();  // a thread that shares this core runs
          }
        }
        lock.lock();
        if (done()) return;
        if (expired) break;
      }
    }
    cv_.wait(lock, done);
  }

 private:
  std::atomic<uint64_t> signals_{0};
  std::condition_variable cv_;
};

}  // namespace partita::detail

#pragma once
// Running work on a thread of its own, for work that must leave no per-thread state on the caller's thread:
// an OpenMP team (an idle multi-threaded team in one thread slows LibTorch work in the others, see
// docs/status.md), a CPU affinity, an intra-op thread count. All of it ends with the thread.
#include <exception>
#include <thread>
#include <utility>

namespace partita {

// Runs `fn` on a new thread and waits for it; what `fn` throws is rethrown here.
template <typename Fn>
void run_on_own_thread(Fn&& fn) {
  std::exception_ptr error;
  std::thread worker([&] {
    try {
      std::forward<Fn>(fn)();
    } catch (...) {
      error = std::current_exception();
    }
  });
  worker.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace partita

#pragma once
// Test support: a loopback c10d job inside one test process, one thread per rank.
#include <exception>
#include <functional>
#include <thread>
#include <vector>

#include "partita/runtime/distributed_env.h"
#include "partita/runtime/distributed_launch.h"

namespace partita::testing {

inline DistributedEnv env_for(int rank, int world, int port, int timeout_s = 10) {
  DistributedEnv e;
  e.rank = rank;
  e.world_size = world;
  e.master_port = port;
  e.timeout = Seconds(timeout_s);
  return e;
}

// Runs body(rank, port) for every rank of a loopback job, one thread per rank; rethrows the first failure.
inline void run_ranks(int world, const std::function<void(int rank, int port)>& body) {
  const int port = free_tcp_port();
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(r, port);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace partita::testing

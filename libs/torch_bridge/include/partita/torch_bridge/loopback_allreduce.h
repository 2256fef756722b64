#pragma once
// All-reduce between two local processes over c10d Gloo on 127.0.0.1, for the loopback link's alpha-beta
// fit. The parent hosts a TCPStore on a free port and starts `world` children of a worker program (partita
// itself, with a hidden subcommand) that join a ProcessGroupGloo and time all-reduces of several sizes;
// rank 0 writes the medians as JSON. Every wait is bounded: children that do not finish within `timeout`
// are killed and the call throws. Not thread-safe with itself (it spawns processes and waits for them).
#include <string>
#include <vector>

#include "partita/core/units.h"
#include "partita/hardware/machine_profile.h"

namespace partita {

struct LoopbackOptions {
  std::string worker_exe;                // the program to start (partita's own path)
  std::vector<std::string> worker_args;  // arguments before ours (the hidden subcommand's name)
  std::vector<int64_t> sizes{4096, 65536, 1 << 20, 8 << 20};  // bytes per message (f32 elements x 4)
  int repeats = 10;                                           // timed all-reduces per size (median)
  int world = 2;
  Seconds timeout{60};
  void validate() const;  // throws partita::Error for an empty exe, world < 2, no sizes, repeats < 1
};

// Runs the children and returns the samples a worker wrote (the all-reduce: rank 0's medians). Throws
// partita::Error with the first line of a failing child's stderr, or "timed out after N s".
std::vector<AllreduceSample> measure_loopback_allreduce(const LoopbackOptions& options);

// What a child runs (the hidden subcommand calls this). Writes {"samples": [{bytes, seconds}...]} to
// `out_path` on rank 0. Throws partita::Error on a Gloo or store failure.
struct LoopbackWorkerArgs {
  int rank = 0;
  int world = 2;
  int port = 0;
  std::vector<int64_t> sizes;
  int repeats = 10;
  int timeout_ms = 30000;
  std::string out_path;
};
void run_loopback_worker(const LoopbackWorkerArgs& args);

}  // namespace partita

#include "partita/torch_bridge/loopback_allreduce.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/core/subprocess.h"
#include "partita/torch_bridge/model.h"
#include "partita/torch_bridge/timing.h"

namespace partita {

void LoopbackOptions::validate() const {
  PARTITA_CHECK(!worker_exe.empty(), "loopback all-reduce: no worker program given");
  PARTITA_CHECK(world >= 2, "loopback all-reduce: world size ", world, "; use 2 or more");
  PARTITA_CHECK(!sizes.empty(), "loopback all-reduce: no message sizes given");
  PARTITA_CHECK(repeats >= 1, "loopback all-reduce: repeats ", repeats, "; use 1 or more");
}

namespace {

std::string join_sizes(const std::vector<int64_t>& sizes) {
  std::string s;
  for (int64_t n : sizes) s += (s.empty() ? "" : ",") + std::to_string(n);
  return s;
}

std::string first_line_of_file(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;  // the error line comes last (after any torch warnings)
  }
  return last;
}

// Waits for all children until the deadline; kills the rest when it passes. Returns exit codes (-1: killed).
std::vector<int> wait_all(const std::vector<pid_t>& pids, Seconds timeout) {
  std::vector<int> status(pids.size(), -2);  // -2: still running
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout.value());
  size_t running = pids.size();
  while (running > 0) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (status[i] != -2) continue;
      int st = 0;
      if (waitpid(pids[i], &st, WNOHANG) == pids[i]) {
        status[i] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        --running;
      }
    }
    if (running == 0) break;
    // A failed child leaves the others waiting in Gloo until their own timeout: stop them now.
    const bool failed = std::any_of(status.begin(), status.end(), [](int st) { return st > 0; });
    if (failed || std::chrono::steady_clock::now() > deadline) {
      for (size_t i = 0; i < pids.size(); ++i) {
        if (status[i] != -2) continue;
        kill(pids[i], SIGKILL);
        waitpid(pids[i], nullptr, 0);
        status[i] = -1;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status;
}

}  // namespace

std::vector<AllreduceSample> measure_loopback_allreduce(const LoopbackOptions& options) {
  options.validate();
  const auto dir = std::filesystem::temp_directory_path() / ("partita-allreduce-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};

  // The parent hosts the store on port 0 (the kernel picks a free port), so there is no port race.
  c10d::TCPStoreOptions store_options;
  store_options.port = 0;
  store_options.isServer = true;
  store_options.waitWorkers = false;
  store_options.timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout.value() * 1000));
  c10d::TCPStore store("127.0.0.1", store_options);
  const int port = store.getPort();

  const std::string out = (dir / "rank0.json").string();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < options.world; ++rank) {
    std::vector<std::string> argv{options.worker_exe};
    argv.insert(argv.end(), options.worker_args.begin(), options.worker_args.end());
    const int timeout_ms = static_cast<int>(options.timeout.value() * 1000 * 0.8);
    for (const std::string& a :
         {std::string("--rank"), std::to_string(rank), std::string("--world"), std::to_string(options.world),
          std::string("--port"), std::to_string(port), std::string("--sizes"), join_sizes(options.sizes),
          std::string("--repeats"), std::to_string(options.repeats), std::string("--timeout-ms"),
          std::to_string(timeout_ms), std::string("--out"), out}) {
      argv.push_back(a);
    }
    try {
      pids.push_back(spawn_quiet(argv, (dir / ("rank" + std::to_string(rank) + ".err")).string(),
                                 "for the loopback all-reduce"));
    } catch (...) {
      wait_all(pids, Seconds(0));  // kill what was started
      throw;
    }
  }
  const std::vector<int> status = wait_all(pids, options.timeout);
  for (int rank = 0; rank < options.world; ++rank) {  // a real failure explains more than a kill
    const int st = status[static_cast<size_t>(rank)];
    PARTITA_CHECK(st <= 0, "loopback all-reduce rank ", rank, " failed (exit ", st,
                  "): ", first_line_of_file((dir / ("rank" + std::to_string(rank) + ".err")).string()));
  }
  for (int rank = 0; rank < options.world; ++rank) {
    PARTITA_CHECK(status[static_cast<size_t>(rank)] == 0, "loopback all-reduce timed out after ",
                  options.timeout.value(), " s (rank ", rank, " killed)");
  }
  const Json j = read_json_file(out);
  std::vector<AllreduceSample> samples;
  for (const auto& s : j.at("samples")) {
    samples.push_back(
        AllreduceSample{Bytes(s.at("bytes").get<int64_t>()), Seconds(s.at("seconds").get<double>())});
  }
  return samples;
}

void run_loopback_worker(const LoopbackWorkerArgs& args) {
  PARTITA_CHECK(args.port > 0 && args.rank >= 0 && args.rank < args.world, "allreduce worker: bad rank ",
                args.rank, " / world ", args.world, " / port ", args.port);
  at::set_num_threads(1);  // the reduction itself is trivial; don't let two children fight for cores
  const auto timeout = std::chrono::milliseconds(args.timeout_ms);
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(args.port);
  store_options.isServer = false;
  store_options.timeout = timeout;
  auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_options);
  auto gloo = c10d::ProcessGroupGloo::Options::create(timeout);
  gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  c10d::ProcessGroupGloo group(store, args.rank, args.world, gloo);

  Json samples = Json::array();
  for (int64_t bytes : args.sizes) {
    std::vector<at::Tensor> tensors{torch::ones({std::max<int64_t>(1, bytes / 4)})};
    auto once = [&] { group.allreduce(tensors)->wait(timeout); };
    once();  // warm-up, and a rendezvous so both ranks start timing together
    std::vector<double> times;
    for (int i = 0; i < args.repeats; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      once();
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    samples.push_back({{"bytes", bytes}, {"seconds", median_of(times)}});
  }
  if (args.rank == 0) write_json_file(args.out_path, Json{{"samples", samples}});
  std::vector<at::Tensor> done{torch::zeros({1})};
  group.allreduce(done)->wait(timeout);  // rank 0 has written before either exits
}

}  // namespace partita

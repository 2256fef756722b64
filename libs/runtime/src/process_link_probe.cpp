#include "partita/runtime/process_link_probe.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/runtime/device_binding.h"
#include "partita/runtime/distributed_group.h"

namespace partita {

namespace {

constexpr auto kReceiverAsleep = std::chrono::milliseconds(1);

// The steady clock, which the processes of one machine share, in seconds.
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// This rank pinned to a core of its own, and its group's environment (the parent hosts the store).
DistributedEnv probe_env(const LoopbackWorkerArgs& args, ProcessTransport transport) {
  DistributedEnv env;
  env.rank = args.rank;
  env.world_size = args.world;
  env.master_port = args.port;
  env.agent_store = true;
  env.timeout = Seconds(args.timeout_ms / 1000.0);
  env.shared_memory = transport == ProcessTransport::kSharedMemory;
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  apply_to_current_thread(bind_device("cpu:" + std::to_string(args.rank % cores)));
  return env;
}

}  // namespace

void run_process_link_probe(const LoopbackWorkerArgs& args, ProcessTransport transport) {
  PARTITA_CHECK(args.world == 2, "message probe: world size ", args.world, "; it runs between 2 processes");
  DistributedGroup group(probe_env(args, transport));
  PARTITA_CHECK(group.messages_share_memory() == (transport == ProcessTransport::kSharedMemory),
                "message probe: asked for ",
                transport == ProcessTransport::kSharedMemory ? "shared memory" : "Gloo",
                " but the group uses ", group.messages_share_memory() ? "shared memory" : "Gloo");
  const int peer = 1 - args.rank;
  // The mailbox's rings map their pages on first touch: run 16 MiB through them first (more than a ring
  // holds), as a run's warm-up steps do, so the timed messages do not pay page faults.
  {
    torch::Tensor warm = torch::zeros({int64_t{1} << 20}, torch::kUInt8);
    for (int i = 0; i < 16; ++i) {
      if (args.rank == 0) {
        group.send(warm, peer, 0, "probe warm-up");
        group.wait_sends();
      } else {
        group.receive(warm, peer, 0, "probe warm-up");
      }
    }
  }
  Json samples = Json::array();
  for (int64_t bytes : args.sizes) {
    // At least the send time, as a double, at the message's start.
    torch::Tensor message = torch::zeros({std::max<int64_t>(8, bytes)}, torch::kUInt8);
    std::vector<double> times;
    for (int i = 0; i <= args.repeats; ++i) {  // the first is a warm-up (buffers set up), not counted
      if (args.rank == 0) {
        // Long enough for the receiver to stop spinning and sleep, as a stage does while the one before it
        // computes.
        std::this_thread::sleep_for(kReceiverAsleep);
        const double sent = now_s();
        std::memcpy(message.data_ptr(), &sent, sizeof sent);
        group.send(message, peer, 0, "probe message");
        group.wait_sends();
      } else {
        group.receive(message, peer, 0, "probe message");
        const double arrived = now_s();
        double sent = 0;
        std::memcpy(&sent, message.data_ptr(), sizeof sent);
        if (i > 0) times.push_back(arrived - sent);
      }
    }
    if (args.rank == 1) {
      std::sort(times.begin(), times.end());
      samples.push_back({{"bytes", message.numel()}, {"seconds", times[times.size() / 2]}});
    }
  }
  if (args.rank == 1) write_json_file(args.out_path, Json{{"samples", samples}});
  group.barrier("message probe end");  // the receiver has written before either exits
}

void run_process_allreduce_probe(const LoopbackWorkerArgs& args) {
  DistributedGroup group(probe_env(args, ProcessTransport::kSharedMemory));
  PARTITA_CHECK(group.shares_memory(), "all-reduce probe: the group does not share memory between its ranks");
  Json samples = Json::array();
  int step = 0;
  for (int64_t bytes : args.sizes) {
    std::vector<torch::Tensor> tensors{torch::ones({std::max<int64_t>(1, bytes / 4)})};
    std::vector<double> times;
    for (int i = 0; i <= args.repeats; ++i) {  // the first is a warm-up, not counted
      const auto t0 = std::chrono::steady_clock::now();
      group.allreduce_sum(tensors, step++, "probe all-reduce");
      if (i > 0)
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    samples.push_back({{"bytes", tensors[0].numel() * 4}, {"seconds", times[times.size() / 2]}});
  }
  if (args.rank == 0) write_json_file(args.out_path, Json{{"samples", samples}});
  group.barrier("all-reduce probe end");
}

}  // namespace partita

#pragma once
// Where an engine worker runs: a torch device, its intra-op thread count and, for CPU core groups, the cores
// its thread is pinned to.
#include <string>
#include <vector>

#include <torch/types.h>

namespace partita {

struct DeviceBinding {
  std::string id;  // plan device id: "cpu", "cpu:0", "cpu:2-3", "cuda:1"
  torch::Device device = torch::kCPU;
  int threads = 1;         // intra-op threads for this worker
  std::vector<int> cores;  // CPU cores to pin to (empty: no pinning)
};

// Binds a plan device id to this machine. Throws partita::Error when the device is not here
// ("cuda:0 is not here: this machine has no CUDA device", "cpu:4 is beyond this machine's 2 cores").
DeviceBinding bind_device(const std::string& id);

// Applies the binding to the calling thread: intra-op threads and core affinity.
void apply_to_current_thread(const DeviceBinding& binding);

}  // namespace partita

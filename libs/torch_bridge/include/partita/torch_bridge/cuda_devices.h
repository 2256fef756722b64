#pragma once
// GPUs of this machine as LibTorch sees them (torch::cuda), named and sized through NVML when it is there.
// With a CPU-only LibTorch or no driver, the list is empty and `note` says why; nothing throws.
#include <string>
#include <vector>

#include "partita/hardware/device.h"
#include "partita/hardware/hardware_db.h"
#include "partita/hardware/nvml.h"

namespace partita {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;       // NVML's name ("NVIDIA H200"); "CUDA device K" when NVML is absent
  Bytes memory_total{0};  // from NVML; 0 when unknown
  Watts power_limit{0};   // from NVML; 0 when unknown
};

struct CudaDiscovery {
  std::vector<CudaDeviceInfo> devices;
  std::string note;  // "" when GPUs were found; else one line ("LibTorch was built without CUDA")
};

// Asks torch::cuda for the device count and NVML (when `nvml` is available) for names and memory.
CudaDiscovery discover_cuda_devices(const Nvml* nvml);

// A datasheet spec for a GPU: the hardware database profile whose name occurs in the GPU's name (longest
// first; "NVIDIA H200" matches "H200"), with the discovered memory; otherwise a spec with only the name and
// memory, whose source says that nothing is known (a microbenchmark fills it in).
DeviceSpec cuda_device_spec(const CudaDeviceInfo& gpu, const HardwareDb* db);

}  // namespace partita

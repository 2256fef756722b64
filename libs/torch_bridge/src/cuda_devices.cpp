#include "partita/torch_bridge/cuda_devices.h"

#include <torch/cuda.h>

namespace partita {

CudaDiscovery discover_cuda_devices(const Nvml* nvml) {
  CudaDiscovery out;
  if (!torch::cuda::is_available()) {
    out.note = "no CUDA device: LibTorch reports none (CPU-only build or no driver/GPU)";
    return out;
  }
  const int count = static_cast<int>(torch::cuda::device_count());
  const bool use_nvml = nvml && nvml->available() && nvml->device_count() >= count;
  for (int i = 0; i < count; ++i) {
    CudaDeviceInfo info;
    info.index = i;
    info.name = "CUDA device " + std::to_string(i);
    // NVML's order matches CUDA's only when CUDA_DEVICE_ORDER=PCI_BUS_ID or there is one kind of GPU; we
    // accept that approximation for names and sizes (they are labels, the benchmark measures speed).
    if (use_nvml) {
      const NvmlDeviceInfo n = nvml->device_info(i);
      info.name = n.name;
      info.memory_total = n.memory_total;
      info.power_limit = n.power_limit;
    }
    out.devices.push_back(info);
  }
  if (!use_nvml) out.note = "NVML not available: GPU names and memory sizes unknown";
  return out;
}

DeviceSpec cuda_device_spec(const CudaDeviceInfo& gpu, const HardwareDb* db) {
  const DeviceSpec* best = nullptr;
  if (db) {
    for (const auto& d : db->devices) {
      if (d.kind != DeviceKind::kCuda || gpu.name.find(d.name) == std::string::npos) continue;
      if (!best || d.name.size() > best->name.size()) best = &d;
    }
  }
  DeviceSpec spec;
  if (best) {
    spec = *best;
  } else {
    spec.name = gpu.name;
    spec.kind = DeviceKind::kCuda;
    spec.source = "unknown GPU (no hardware profile matches '" + gpu.name + "'): run partita profile";
  }
  if (gpu.memory_total.value() > 0) spec.memory = gpu.memory_total;
  if (gpu.power_limit.value() > 0) spec.tdp = gpu.power_limit;
  return spec;
}

}  // namespace partita

#pragma once
// NVIDIA Management Library, loaded at run time with dlopen so partita has no link-time dependency on it and
// runs where there is no GPU or driver. When the library or a driver is absent, available() is false and
// error() says why; nothing throws on construction.
//
// Thread safety: NVML itself is thread-safe; an Nvml object is immutable after construction, so its const
// functions may be called from several threads. Create one object per process (each calls nvmlInit and
// nvmlShutdown).
#include <memory>
#include <optional>
#include <string>

#include "partita/core/units.h"

namespace partita {

// What NVML says about one GPU.
struct NvmlDeviceInfo {
  int index = 0;
  std::string name;  // "NVIDIA H200"
  Bytes memory_total{0};
  Bytes memory_free{0};
  Watts power_limit{0};  // current enforced power management limit; 0 when NVML does not say
};

// The power limits NVML accepts for a GPU.
struct NvmlPowerRange {
  Watts min{0};
  Watts max{0};
};

class Nvml {
 public:
  static constexpr const char* kDefaultLibrary = "libnvidia-ml.so.1";

  // Loads `library` (a soname or a path) and calls nvmlInit_v2. Never throws.
  explicit Nvml(const std::string& library = kDefaultLibrary);
  ~Nvml();
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;

  bool available() const;
  // Why NVML is not available ("libnvidia-ml.so.1: cannot open shared object file..."); "" when it is.
  const std::string& error() const { return error_; }

  // Number of GPUs NVML sees; 0 when not available.
  int device_count() const;
  // Name, memory and power limit of GPU `index`. Throws partita::Error when NVML is not available or the
  // index is out of range.
  NvmlDeviceInfo device_info(int index) const;
  // Current board power draw; nullopt when not available or not supported by the GPU.
  std::optional<Watts> power_usage(int index) const;
  // Energy used since the driver loaded (Volta and newer); nullopt when not available or not supported.
  std::optional<Joules> total_energy(int index) const;
  // The power limits GPU `index` accepts; nullopt when NVML does not say.
  std::optional<NvmlPowerRange> power_range(int index) const;
  // Sets GPU `index`'s power management limit (device_info().power_limit reads it back). Needs root; throws
  // partita::Error with NVML's reason otherwise. The limit stays after the process ends (until a reboot or
  // the driver reloads): whoever sets it restores it (see power_cap.h).
  void set_power_limit(int index, Watts limit) const;

 private:
  struct Api;
  std::unique_ptr<Api> api_;  // null when not available
  std::string error_;
};

}  // namespace partita

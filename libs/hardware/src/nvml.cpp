#include "partita/hardware/nvml.h"

#include <dlfcn.h>

#include "partita/core/error.h"

namespace partita {

namespace {
// The subset of nvml.h partita uses; declared here so no NVIDIA header is needed to build.
using NvmlReturn = int;  // nvmlReturn_t; 0 is NVML_SUCCESS
using NvmlDevice = void*;
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
constexpr NvmlReturn kSuccess = 0;
constexpr NvmlReturn kNoPermission = 4;  // NVML_ERROR_NO_PERMISSION
}  // namespace

struct Nvml::Api {
  void* handle = nullptr;
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  const char* (*error_string)(NvmlReturn) = nullptr;
  NvmlReturn (*device_count)(unsigned*) = nullptr;
  NvmlReturn (*handle_by_index)(unsigned, NvmlDevice*) = nullptr;
  NvmlReturn (*name)(NvmlDevice, char*, unsigned) = nullptr;
  NvmlReturn (*memory_info)(NvmlDevice, NvmlMemory*) = nullptr;
  NvmlReturn (*power_limit)(NvmlDevice, unsigned*) = nullptr;
  NvmlReturn (*power_usage)(NvmlDevice, unsigned*) = nullptr;
  NvmlReturn (*total_energy)(NvmlDevice, unsigned long long*) = nullptr;
  NvmlReturn (*limit_constraints)(NvmlDevice, unsigned*, unsigned*) = nullptr;
  NvmlReturn (*set_limit)(NvmlDevice, unsigned) = nullptr;

  ~Api() {
    if (shutdown) shutdown();
    if (handle) dlclose(handle);
  }

  template <typename Fn>
  bool load(Fn& fn, const char* symbol) {
    fn = reinterpret_cast<Fn>(dlsym(handle, symbol));
    return fn != nullptr;
  }

  std::string describe(NvmlReturn r) const {
    const char* s = error_string ? error_string(r) : nullptr;
    return s ? std::string(s) : "NVML error " + std::to_string(r);
  }
};

Nvml::Nvml(const std::string& library) {
  auto api = std::make_unique<Api>();
  api->handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!api->handle) {
    const char* why = dlerror();
    error_ = "NVML not available: " + std::string(why ? why : library);
    return;
  }
  // Optional entry points (energy counter, names of errors) may be missing on old drivers.
  api->load(api->error_string, "nvmlErrorString");
  api->load(api->power_limit, "nvmlDeviceGetEnforcedPowerLimit");
  api->load(api->power_usage, "nvmlDeviceGetPowerUsage");
  api->load(api->total_energy, "nvmlDeviceGetTotalEnergyConsumption");
  api->load(api->limit_constraints, "nvmlDeviceGetPowerManagementLimitConstraints");
  api->load(api->set_limit, "nvmlDeviceSetPowerManagementLimit");
  decltype(api->shutdown) shutdown = nullptr;
  if (!api->load(api->init, "nvmlInit_v2") || !api->load(shutdown, "nvmlShutdown") ||
      !api->load(api->device_count, "nvmlDeviceGetCount_v2") ||
      !api->load(api->handle_by_index, "nvmlDeviceGetHandleByIndex_v2") ||
      !api->load(api->name, "nvmlDeviceGetName") || !api->load(api->memory_info, "nvmlDeviceGetMemoryInfo")) {
    error_ = "NVML not available: " + library + " lacks a required nvml* function (driver too old?)";
    return;
  }
  if (const NvmlReturn r = api->init(); r != kSuccess) {
    error_ = "NVML not available: nvmlInit failed: " + api->describe(r);
    return;
  }
  api->shutdown = shutdown;  // only shut down what was initialized
  api_ = std::move(api);
}

Nvml::~Nvml() = default;

bool Nvml::available() const { return api_ != nullptr; }

int Nvml::device_count() const {
  if (!api_) return 0;
  unsigned n = 0;
  return api_->device_count(&n) == kSuccess ? static_cast<int>(n) : 0;
}

NvmlDeviceInfo Nvml::device_info(int index) const {
  PARTITA_CHECK(api_ != nullptr, "device_info(", index, "): ", error_);
  const int count = device_count();
  PARTITA_CHECK(index >= 0 && index < count, "NVML GPU index ", index, " out of range: NVML sees ", count,
                " GPUs");
  NvmlDevice dev = nullptr;
  const NvmlReturn r = api_->handle_by_index(static_cast<unsigned>(index), &dev);
  PARTITA_CHECK(r == kSuccess, "NVML cannot open GPU ", index, ": ", api_->describe(r));
  NvmlDeviceInfo info;
  info.index = index;
  char name[96] = {};
  if (api_->name(dev, name, sizeof(name)) == kSuccess) info.name = name;
  NvmlMemory mem{};
  if (api_->memory_info(dev, &mem) == kSuccess) {
    info.memory_total = Bytes(static_cast<int64_t>(mem.total));
    info.memory_free = Bytes(static_cast<int64_t>(mem.free));
  }
  unsigned milliwatts = 0;
  if (api_->power_limit && api_->power_limit(dev, &milliwatts) == kSuccess)
    info.power_limit = Watts(milliwatts / 1e3);
  return info;
}

std::optional<Watts> Nvml::power_usage(int index) const {
  NvmlDevice dev = nullptr;
  unsigned milliwatts = 0;
  if (!api_ || !api_->power_usage || index < 0 ||
      api_->handle_by_index(static_cast<unsigned>(index), &dev) != kSuccess ||
      api_->power_usage(dev, &milliwatts) != kSuccess) {
    return std::nullopt;
  }
  return Watts(milliwatts / 1e3);
}

std::optional<Joules> Nvml::total_energy(int index) const {
  NvmlDevice dev = nullptr;
  unsigned long long millijoules = 0;
  if (!api_ || !api_->total_energy || index < 0 ||
      api_->handle_by_index(static_cast<unsigned>(index), &dev) != kSuccess ||
      api_->total_energy(dev, &millijoules) != kSuccess) {
    return std::nullopt;
  }
  return Joules(static_cast<double>(millijoules) / 1e3);
}

std::optional<NvmlPowerRange> Nvml::power_range(int index) const {
  NvmlDevice dev = nullptr;
  unsigned low = 0, high = 0;
  if (!api_ || !api_->limit_constraints || index < 0 ||
      api_->handle_by_index(static_cast<unsigned>(index), &dev) != kSuccess ||
      api_->limit_constraints(dev, &low, &high) != kSuccess) {
    return std::nullopt;
  }
  return NvmlPowerRange{Watts(low / 1e3), Watts(high / 1e3)};
}

void Nvml::set_power_limit(int index, Watts limit) const {
  PARTITA_CHECK(api_ != nullptr, "cannot cap the power of cuda:", index, ": ", error_);
  PARTITA_CHECK(api_->set_limit != nullptr, "cannot cap the power of cuda:", index,
                ": this NVML has no nvmlDeviceSetPowerManagementLimit (driver too old?)");
  NvmlDevice dev = nullptr;
  NvmlReturn r = api_->handle_by_index(static_cast<unsigned>(index), &dev);
  PARTITA_CHECK(r == kSuccess, "NVML cannot open GPU ", index, ": ", api_->describe(r));
  r = api_->set_limit(dev, static_cast<unsigned>(limit.value() * 1e3 + 0.5));
  PARTITA_CHECK(r == kSuccess, "cannot cap the power of cuda:", index, " at ", limit.value(),
                " W: ", api_->describe(r),
                r == kNoPermission ? " (changing a GPU's power limit needs root)" : "");
}

}  // namespace partita

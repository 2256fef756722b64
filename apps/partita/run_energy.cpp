#include "run_energy.h"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "machine_devices.h"
#include "partita/hardware/cpu_info.h"
#include "partita/hardware/cpu_spec.h"
#include "partita/torch_bridge/cuda_devices.h"

namespace partita::app {

namespace {

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "this machine";
  return name;
}

// Power figures of the machine, looked up once per process (the database read, the CPU and GPUs found): the
// hardware database's (or a guess per core) for the CPU, the database's for each GPU LibTorch finds (NVML's
// power limit when it says).
struct MachinePower {
  DeviceSpec whole_cpu;
  std::vector<std::pair<int, DeviceSpec>> gpus;  // (index, spec)
};

const MachinePower& machine_power(const Nvml& nvml) {
  static const MachinePower power = [&] {
    const std::optional<HardwareDb> db = try_load_hardware_db();
    const HardwareDb* dbp = db ? &*db : nullptr;
    MachinePower p;
    p.whole_cpu = cpu_device_spec(discover_cpu(), dbp);
    for (const auto& g : discover_cuda_devices(nvml.available() ? &nvml : nullptr).devices)
      p.gpus.emplace_back(g.index, cuda_device_spec(g, dbp));
    return p;
  }();
  return power;
}

// Each device's power figures; a device found nowhere draws nothing.
std::vector<DeviceSpec> power_specs(const std::vector<std::string>& devices, const MachinePower& power) {
  std::vector<DeviceSpec> out;
  for (const auto& id_text : devices) {
    const DeviceId id = parse_device_id(id_text);
    DeviceSpec spec;
    spec.name = id_text;
    if (id.kind == DeviceKind::kCpu) {
      spec = id.index < 0 ? power.whole_cpu : cpu_group_spec(power.whole_cpu, id.cpu_cores());
    } else if (id.kind == DeviceKind::kCuda) {
      for (const auto& [index, gpu] : power.gpus) {
        if (index == id.index) spec = gpu;
      }
    }
    out.push_back(spec);
  }
  return out;
}

bool is_cpu(const std::string& id) { return parse_device_id(id).kind == DeviceKind::kCpu; }

}  // namespace

RunEnergyMeter::RunEnergyMeter(const std::vector<std::string>& devices)
    : devices_(devices),
      specs_(power_specs(devices, machine_power(nvml_))),
      whole_cpu_(machine_power(nvml_).whole_cpu) {}

void RunEnergyMeter::start() {
  const bool any_cpu = std::any_of(devices_.begin(), devices_.end(), is_cpu);
  rapl_start_ = rapl_.available() && any_cpu ? rapl_.read() : std::vector<Joules>{};
  nvml_start_.clear();
  for (const auto& id_text : devices_) {
    const DeviceId id = parse_device_id(id_text);
    nvml_start_.push_back(id.kind == DeviceKind::kCuda && nvml_.available() ? nvml_.total_energy(id.index)
                                                                            : std::nullopt);
  }
}

std::vector<DeviceEnergy> RunEnergyMeter::finish(int steps, double step_ms,
                                                 const std::vector<std::pair<std::string, double>>& busy_ms,
                                                 int blas_threads, bool whole_machine) const {
  std::vector<DeviceEnergy> out;
  if (steps <= 0) return out;
  if (!rapl_start_.empty()) {
    out.push_back(DeviceEnergy{"cpu packages of " + host_name(),
                               rapl_.used(rapl_start_, rapl_.read()).value() / steps,
                               EnergySource::kMeasuredRapl});
  }
  for (size_t i = 0; i < devices_.size(); ++i) {
    const std::string& id = devices_[i];
    if (is_cpu(id) && !rapl_start_.empty()) continue;  // in the packages' figure
    if (i < nvml_start_.size() && nvml_start_[i]) {
      const std::optional<Joules> now = nvml_.total_energy(parse_device_id(id).index);
      if (now) {
        out.push_back(
            DeviceEnergy{id, (*now - *nvml_start_[i]).value() / steps, EnergySource::kMeasuredNvml});
        continue;
      }
    }
    double busy = 0;
    for (const auto& [device, ms] : busy_ms) {
      if (device == id) busy += ms;
    }
    busy = std::min(busy, step_ms);
    DeviceSpec spec = specs_[i];
    if (is_cpu(id) && spec.cores > 0 && whole_cpu_.cores > 0) {
      const int busy_cores = std::min(std::max(spec.cores, blas_threads), whole_cpu_.cores);
      spec.tdp = std::max(spec.tdp, whole_cpu_.tdp * (static_cast<double>(busy_cores) / whole_cpu_.cores));
    }
    const Joules j = device_energy(spec, milliseconds(busy), milliseconds(step_ms - busy));
    out.push_back(
        DeviceEnergy{id, j.value(), EnergySource::kEstimated, spec.tdp.value(), spec.idle_power.value()});
  }
  if (whole_machine && rapl_start_.empty() && whole_cpu_.cores > 0) {
    int covered = 0;
    for (size_t i = 0; i < devices_.size(); ++i) covered += is_cpu(devices_[i]) ? specs_[i].cores : 0;
    const int left = whole_cpu_.cores - covered;
    if (left > 0) {  // idle, but still drawing power, beside the plan
      const Watts idle = whole_cpu_.idle_power * (static_cast<double>(left) / whole_cpu_.cores);
      out.push_back(DeviceEnergy{fmt::format("cpu cores outside the plan ({})", left),
                                 idle.value() * step_ms / 1000.0, EnergySource::kEstimated, 0, idle.value()});
    }
  }
  return out;
}

Json energy_to_json(const std::vector<DeviceEnergy>& energy) {
  Json devices = Json::array();
  double total = 0;
  for (const auto& e : energy) {
    Json d{{"device", e.device},
           {"joules_per_step", e.joules_per_step},
           {"source", energy_source_name(e.source)}};
    if (e.source == EnergySource::kEstimated) {
      d["busy_watts"] = e.busy_watts;
      d["idle_watts"] = e.idle_watts;
    }
    devices.push_back(d);
    total += e.joules_per_step;
  }
  return Json{{"joules_per_step", total}, {"devices", devices}};
}

std::vector<DeviceEnergy> energy_from_json(const Json& j) {
  std::vector<DeviceEnergy> out;
  for (const auto& d : j.at("devices")) {
    DeviceEnergy e;
    e.device = d.at("device").get<std::string>();
    e.joules_per_step = d.at("joules_per_step").get<double>();
    const std::string source = d.at("source").get<std::string>();
    e.source = source == energy_source_name(EnergySource::kMeasuredNvml)   ? EnergySource::kMeasuredNvml
               : source == energy_source_name(EnergySource::kMeasuredRapl) ? EnergySource::kMeasuredRapl
                                                                           : EnergySource::kEstimated;
    e.busy_watts = d.value("busy_watts", 0.0);
    e.idle_watts = d.value("idle_watts", 0.0);
    out.push_back(e);
  }
  return out;
}

}  // namespace partita::app

// partita devices: this machine's devices (whole CPU, core groups, GPUs) with their figures, and one line for
// each thing that is not here (GPU, NVML, RAPL). Figures come from the cached machine profile when `partita
// profile` has run, else from discovery (estimates, labelled so). Never runs benchmarks.
#include <filesystem>

#include <fmt/format.h>

#include "commands.h"
#include "machine_devices.h"
#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/core/json_io.h"
#include "partita/hardware/cpu_spec.h"
#include "partita/hardware/device_json.h"
#include "partita/hardware/local_cluster.h"
#include "partita/hardware/nvml.h"
#include "partita/hardware/power_cap.h"
#include "partita/hardware/rapl.h"
#include "partita/torch_bridge/cuda_devices.h"
#include "partita/torch_bridge/machine_fingerprint.h"

namespace partita::app {

namespace {

struct DevicesArgs {
  std::string json;
};

struct Row {
  std::string id;
  DeviceSpec spec;
  int threads = 0;
};

std::string origin(const DeviceSpec& s) {
  if (s.measured) return "measured";
  return s.source.find("estimate") != std::string::npos ? "estimated" : "datasheet";
}

void run_devices(const DevicesArgs& args) {
  check_output_path(args.json, "--json");
  const auto db = try_load_hardware_db();
  const HardwareDb* dbp = db ? &*db : nullptr;
  const CpuInfo cpu = discover_cpu();
  const DeviceSpec cpu_spec = cpu_device_spec(cpu, dbp);
  std::vector<Row> rows;
  rows.push_back({"cpu", cpu_spec, cpu_spec.cores});
  LocalClusterOptions groups;
  groups.cpu_partition = CpuPartition::kCoreGroups;
  if (cpu_spec.cores > 1) {
    for (const auto& d : make_local_cluster(cpu_spec, groups).devices)
      rows.push_back({d.id, d.spec, d.spec.cores});
  }
  const Nvml nvml;
  const CudaDiscovery gpus = discover_cuda_devices(&nvml);
  for (const auto& g : gpus.devices)
    rows.push_back({"cuda:" + std::to_string(g.index), cuda_device_spec(g, dbp), 0});

  // Measured figures replace discovered ones where the cached profile has the device.
  const std::string profile_path = machine_profile_path(machine_fingerprint().key());
  std::optional<MachineProfile> profile;
  if (std::filesystem::exists(profile_path)) {
    try {
      profile = machine_profile_from_json(read_json_file(profile_path));
    } catch (const Error&) {
    }
  }
  if (profile) {
    for (auto& r : rows) {
      if (const ProfiledDevice* d = profile->find(r.id)) {
        r.spec = d->spec;
        r.threads = d->threads;
      }
    }
  }

  std::FILE* out = args.json == "-" ? stderr : stdout;
  fmt::print(out, "{:<8} {:<5} {:<34} {:>7} {:>10} {:>13} {:>11} {:>9}  {}\n", "ID", "KIND", "NAME",
             "THREADS", "MEMORY", "f32 FLOP/s", "BANDWIDTH", "OVERHEAD", "FIGURES");
  for (const auto& r : rows) {
    const auto f32 = r.spec.flops_for(DType::kFloat32).value();
    fmt::print(out, "{:<8} {:<5} {:<34.34} {:>7} {:>10} {:>13} {:>11} {:>9}  {}\n", r.id,
               device_kind_name(r.spec.kind), r.spec.name, r.threads > 0 ? std::to_string(r.threads) : "-",
               format_bytes(r.spec.memory), fmt::format("{:.1f} G", f32 / 1e9),
               fmt::format("{:.1f} GB/s", r.spec.memory_bandwidth.value() / 1e9),
               fmt::format("{:.1f} us", r.spec.op_overhead.value() * 1e6), origin(r.spec));
  }
  const Rapl rapl_counters(powercap_root());
  const bool rapl = rapl_counters.available();
  const std::string& rapl_why = rapl_counters.error();
  if (!gpus.note.empty()) fmt::print(out, "GPU: {}\n", gpus.note);
  if (!nvml.available()) fmt::print(out, "NVML: {}\n", nvml.error());
  if (!rapl) fmt::print(out, "RAPL: not available ({}); CPU energy is an estimate\n", rapl_why);
  // Current power limits: what `run --power-cap` would replace (and what a killed run may have left).
  Json limits = Json::array();
  for (const auto& g : gpus.devices) {
    if (g.power_limit.value() <= 0) continue;
    const auto range = nvml.power_range(g.index);
    fmt::print(out, "power limit: cuda:{} {:g} W{}\n", g.index, g.power_limit.value(),
               range ? fmt::format(" (accepts {:g} to {:g} W)", range->min.value(), range->max.value()) : "");
    limits.push_back({{"device", "cuda:" + std::to_string(g.index)}, {"watts", g.power_limit.value()}});
  }
  if (rapl) {
    const auto names = rapl_counters.packages();
    for (size_t k = 0; k < names.size(); ++k) {
      const auto limit = rapl_counters.power_limit(k);
      if (!limit) continue;
      fmt::print(out, "power limit: cpu {} {:g} W\n", names[k], limit->value());
      limits.push_back({{"device", "cpu " + names[k]}, {"watts", limit->value()}});
    }
  }
  // Limits a partita run killed outright left capped (its journal); `partita run` puts them back.
  Json left = Json::array();
  for (const LeftPowerCap& l : left_power_caps(default_power_cap_journal_dir(), rapl_counters)) {
    fmt::print(
        out,
        "note: {} was capped at {:g} W by partita process {}, which ended without restoring it (it was "
        "{:g} W); the next partita run puts it back\n",
        l.device, l.cap.value(), l.pid, l.was.value());
    left.push_back(
        {{"device", l.device}, {"cap_w", l.cap.value()}, {"was_w", l.was.value()}, {"pid", l.pid}});
  }
  fmt::print(out, "{}\n",
             profile ? "measured figures from " + profile_path + " (" + profile->date + ")"
                     : std::string("no machine profile yet: run `partita profile` to measure"));
  if (!args.json.empty()) {
    Json j;
    Json devices = Json::array();
    for (const auto& r : rows) {
      devices.push_back({{"id", r.id},
                         {"threads", r.threads},
                         {"figures", origin(r.spec)},
                         {"spec", device_spec_to_json(r.spec)}});
    }
    j["devices"] = devices;
    j["cpu"] = {{"model", cpu.model_name},
                {"physical_cores", cpu.physical_cores},
                {"threads", cpu.threads},
                {"simd", cpu.simd}};
    j["cuda"] = {{"count", gpus.devices.size()}, {"note", gpus.note}};
    j["nvml"] = {{"available", nvml.available()}, {"error", nvml.error()}};
    j["rapl"] = {{"available", rapl}, {"error", rapl_why}};
    j["power_limits"] = limits;
    j["power_caps_left"] = left;
    j["profile"] = profile ? Json(profile_path) : Json(nullptr);
    write_json_file(args.json, j);
  }
}

}  // namespace

Command register_devices(CLI::App& app) {
  auto args = std::make_shared<DevicesArgs>();
  CLI::App* cmd = app.add_subcommand("devices", "list this machine's devices (CPU, core groups, GPUs)");
  cmd->add_option("--json", args->json, "write the device list as JSON (- for stdout)");
  return Command{cmd, [args] { run_devices(*args); }};
}

}  // namespace partita::app

#include "machine_devices.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "partita/core/error.h"
#include "partita/core/log.h"
#include "partita/hardware/rapl.h"
#include "partita/torch_bridge/microbench.h"

namespace partita::app {

std::optional<HardwareDb> try_load_hardware_db() {
  try {
    return load_hardware_db(default_hardware_db_path());
  } catch (const Error& e) {
    log_warning(std::string("hardware database not used: ") + e.what());
    return std::nullopt;
  }
}

MicrobenchOptions microbench_options(const HardwareDb* db) {
  MicrobenchOptions o;
  o.mode = profile_mode_from_env();
  o.db = db;
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    o.loopback.worker_exe = self.string();
    o.loopback.worker_args = {"-q", "__loopback-worker"};
    o.messages.worker_exe = self.string();
    o.messages.worker_args = {"-q",       "__loopback-worker", "--probe",
                              "messages", "--transport",       "shared-memory"};
    o.messages.sizes = {64, 65536, 1 << 20, 8 << 20};
    o.collectives.worker_exe = self.string();
    o.collectives.worker_args = {"-q", "__loopback-worker", "--transport", "shared-memory"};
  }
  return o;
}

CachedProfile machine_profile(const HardwareDb* db, bool refresh) {
  CachedProfile c = load_or_measure_profile(microbench_options(db), refresh);
  log_info(c.from_cache ? "using the cached machine profile " + c.path + " (measured " + c.profile.date +
                              "; partita profile --refresh to measure again)"
                        : "machine profile written to " + c.path);
  return c;
}

std::string powercap_root() {
  const char* root = std::getenv("PARTITA_POWERCAP_ROOT");
  return root != nullptr && root[0] != '\0' ? root : Rapl::kDefaultRoot;
}

ResolvedDevice resolve_device(const MachineProfile& profile, const DeviceId& id, int cpu_threads) {
  std::string have;
  for (const auto& d : profile.devices) have += (have.empty() ? "" : ", ") + d.id;
  const ProfiledDevice* whole = profile.find("cpu");
  PARTITA_ASSERT(whole != nullptr, "the machine profile has no 'cpu' device");
  switch (id.kind) {
    case DeviceKind::kCpu: {
      const int cores = whole->spec.cores;
      const int threads = id.index < 0 ? cpu_threads : id.cpu_cores();
      PARTITA_CHECK(id.index < 0 || id.last_core < cores, "device ", id.to_string(),
                    " is not here: this CPU has cores 0..", cores - 1, " (devices: ", have, ")");
      DeviceSpec spec = cpu_spec_at_threads(profile, whole->spec, threads);
      if (id.index >= 0) {
        spec.name = whole->spec.name + " (cores " + id.to_string().substr(4) + ")";
      } else {  // the whole CPU: all its cores draw power and hold its memory, whatever the thread count
        spec.tdp = whole->spec.tdp;
        spec.idle_power = whole->spec.idle_power;
        spec.cores = cores;
      }
      return ResolvedDevice{spec, threads};
    }
    case DeviceKind::kCuda: {
      const ProfiledDevice* d = profile.find(id.to_string());
      PARTITA_CHECK(d != nullptr, "device ", id.to_string(), " is not here: this machine has ", have);
      return ResolvedDevice{d->spec, 0};
    }
    case DeviceKind::kOther:
      break;
  }
  PARTITA_FAIL("device ", id.to_string(), " cannot be estimated locally: this machine has ", have);
}

}  // namespace partita::app

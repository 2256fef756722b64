#pragma once
// This machine's devices for `partita devices`, `profile` and `estimate`: discovery (CPU, core groups, GPUs
// through LibTorch and NVML, RAPL presence) and the measured machine profile (cached microbenchmarks).
#include <optional>
#include <string>
#include <vector>

#include "partita/hardware/device.h"
#include "partita/hardware/hardware_db.h"
#include "partita/hardware/machine_profile.h"
#include "partita/torch_bridge/microbench.h"

namespace partita::app {

// The hardware database when it can be read, else nullopt (a one-line warning says why).
std::optional<HardwareDb> try_load_hardware_db();

// Options for the microbenchmarks: mode from PARTITA_PROFILE_QUICK, this binary as the loopback worker.
MicrobenchOptions microbench_options(const HardwareDb* db);

// The profile of this machine from the cache, or measured now (with progress on stderr) and cached.
CachedProfile machine_profile(const HardwareDb* db, bool refresh);

// Where the RAPL powercap tree is: $PARTITA_POWERCAP_ROOT (tests point it at a fake tree), else
// /sys/class/powercap.
std::string powercap_root();

// The spec and intra-op thread count to run `id` with, from the profile. For "cpu" the thread count is
// `cpu_threads` (the caller's choice, e.g. the best for the model's dominant op class); "cpu:A-B" runs B-A+1
// threads. Throws partita::Error for a device this machine lacks, naming the ones it has.
struct ResolvedDevice {
  DeviceSpec spec;
  int threads = 0;  // 0 for GPUs
};
ResolvedDevice resolve_device(const MachineProfile& profile, const DeviceId& id, int cpu_threads);

}  // namespace partita::app

#pragma once
// Microbenchmarks of this machine (`partita profile`): GEMM throughput per dtype and size, memory bandwidth,
// intra-op thread scaling (matmul, conv, elementwise at 1..N threads), per-op dispatch overhead, generic
// ops of every op class at a few sizes and every thread count (the calibration of the roofline), host<->GPU
// copies when a GPU is present, and an alpha-beta fit of a loopback all-reduce between two local processes.
// The result is a MachineProfile with a measured DeviceSpec per local device ("cpu", each single-core group
// "cpu:K", "cuda:K") and the loopback LinkSpec, cached under cache_dir() by machine fingerprint.
//
// Assumptions: the machine is shared and noisy, so each figure is a median of repeats under a time budget;
// power figures (TDP, idle) cannot be measured here (no RAPL/NVML on CPUs) and stay datasheet/estimates,
// which the spec's source says. Progress goes to log_info. Changes at::get_num_threads() while running and
// restores it. Not thread-safe (it owns the intra-op thread setting while it runs).
#include <string>

#include "partita/hardware/hardware_db.h"
#include "partita/hardware/machine_profile.h"
#include "partita/torch_bridge/loopback_allreduce.h"

namespace partita {

enum class ProfileMode { kFull, kQuick };

struct MicrobenchOptions {
  ProfileMode mode = ProfileMode::kFull;
  // The loopback all-reduce runs when loopback.worker_exe is set; otherwise the profile notes its absence.
  LoopbackOptions loopback;
  // The message probe between two processes (through shared memory, as launched plans talk) runs when
  // messages.worker_exe is set: its worker times one-way messages (runtime/process_link_probe.h).
  LoopbackOptions messages;
  // Likewise, the all-reduce through shared memory between two processes (collectives.worker_exe set).
  LoopbackOptions collectives;
  const HardwareDb* db = nullptr;  // datasheet figures for power and unknown fields; may be null
};

// Runs every benchmark; never throws for a part that cannot run here (no GPU, no bf16, all-reduce failure):
// the profile's notes say what was skipped and why.
MachineProfile run_microbenchmarks(const MicrobenchOptions& options);

// The cached profile for this machine's fingerprint when there is one (and refresh is false), else a fresh
// run_microbenchmarks() written to the cache. A quick-mode cache satisfies only quick-mode requests.
struct CachedProfile {
  MachineProfile profile;
  bool from_cache = false;
  std::string path;
};
CachedProfile load_or_measure_profile(const MicrobenchOptions& options, bool refresh);

// The mode requested by the environment: PARTITA_PROFILE_QUICK=1 selects kQuick (tests use it).
ProfileMode profile_mode_from_env();

// A measured spec of `threads` intra-op threads of the host CPU from the profile's thread-scaling samples
// (FLOP/s of the benchmark matmul, conv efficiency = conv rate / matmul rate, bandwidth of the elementwise
// add, the boxed op overhead, and the per-class calibrated fits of the generic ops measured at that count,
// cost/op_class_fit.h); power from
// `base` scaled by threads / base.cores. Throws partita::Error when the profile has no sample for `threads`.
DeviceSpec cpu_spec_at_threads(const MachineProfile& profile, const DeviceSpec& base, int threads);

}  // namespace partita

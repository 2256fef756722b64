#include "partita/hardware/cpu_spec.h"

#include <algorithm>

#include "partita/core/error.h"

namespace partita {

namespace {

DeviceSpec estimate_cpu_spec(const CpuInfo& cpu) {
  const int cores = std::max(1, cpu.physical_cores);
  const double hz = (cpu.mhz > 0 ? cpu.mhz : 2000.0) * 1e6;
  // CPUs with AVX2 or AVX-512 have had two FMA pipes per core since Haswell / Zen 2.
  const int fma_units = cpu.has_flag("avx2") || cpu.has_flag("avx512f") ? 2 : 1;
  const double f32 = cores * hz * cpu.f32_lanes() * 2.0 * fma_units;
  DeviceSpec spec;
  spec.name = cpu.model_name.empty() ? "host CPU" : cpu.model_name;
  spec.kind = DeviceKind::kCpu;
  spec.peak_flops[DType::kFloat32] = FlopsPerSecond(f32);
  spec.peak_flops[DType::kFloat64] = FlopsPerSecond(f32 / 2);
  if (cpu.has_flag("amx_bf16")) {
    spec.peak_flops[DType::kBFloat16] = FlopsPerSecond(cores * hz * 1024.0);
  } else if (cpu.has_flag("avx512_bf16")) {
    spec.peak_flops[DType::kBFloat16] = FlopsPerSecond(2 * f32);
  }
  spec.memory_bandwidth = BytesPerSecond(std::min(8e9 * cores, 200e9));
  spec.memory = cpu.memory_total;
  spec.tdp = Watts(10.0 * cores);
  spec.idle_power = spec.tdp * 0.3;
  spec.op_overhead = Seconds(5e-6);
  spec.cores = cores;
  spec.source =
      "estimated from /proc/cpuinfo (cores x clock x SIMD width x FMA); bandwidth and power are "
      "rough guesses: run a microbenchmark to measure";
  return spec;
}

}  // namespace

DeviceSpec cpu_group_spec(const DeviceSpec& whole_cpu, int cores) {
  PARTITA_CHECK(whole_cpu.cores > 0, "device '", whole_cpu.name, "' has cores = ", whole_cpu.cores,
                ": a core group needs the whole CPU's physical core count");
  PARTITA_CHECK(cores >= 1 && cores <= whole_cpu.cores, "a group of ", cores, " cores asked of '",
                whole_cpu.name, "', which has ", whole_cpu.cores, ": ask for 1 to ", whole_cpu.cores);
  if (cores == whole_cpu.cores) return whole_cpu;
  const double share = static_cast<double>(cores) / whole_cpu.cores;
  DeviceSpec group = whole_cpu;
  group.name =
      whole_cpu.name + " (" + std::to_string(cores) + " of " + std::to_string(whole_cpu.cores) + " cores)";
  group.kind = DeviceKind::kCpu;
  for (auto& entry : group.peak_flops) entry.second = entry.second * share;
  // Bandwidth saturates with a few cores: each core keeps enough misses in flight for about two cores' share.
  group.memory_bandwidth = whole_cpu.memory_bandwidth * std::min(1.0, 2.0 * share);
  // Calibrated class fits scale like the figures they refine; a call's fixed cost does not depend on cores.
  for (auto* fits : {&group.op_class_fits, &group.op_class_backward_fits}) {
    for (auto& entry : *fits) {
      entry.second.flops_rate = entry.second.flops_rate * share;
      entry.second.bandwidth = entry.second.bandwidth * std::min(1.0, 2.0 * share);
    }
  }
  group.tdp = whole_cpu.tdp * share;
  group.idle_power = whole_cpu.idle_power * share;
  group.cores = cores;
  return group;
}

DeviceSpec cpu_device_spec(const CpuInfo& cpu, const HardwareDb* db) {
  const DeviceSpec* profile = db ? db->match_cpu_model(cpu.model_name) : nullptr;
  if (!profile) return estimate_cpu_spec(cpu);
  DeviceSpec spec = *profile;
  if (cpu.physical_cores > 0 && cpu.physical_cores < profile->cores)
    spec = cpu_group_spec(*profile, cpu.physical_cores);
  if (cpu.memory_total.value() > 0) spec.memory = cpu.memory_total;
  return spec;
}

namespace {
// One-way latency of a small message through the mailbox to a process asleep in its receive, measured
// between two pinned processes on the 2-core development VM (2026-12-05: 50-80 us at 64 bytes, most of it
// waking the receiver).
constexpr double kProcessWakeLatencyS = 50e-6;
// Latency per ring step of an all-reduce through the exchange when both members arrive together, measured
// likewise (2026-12-05: 2.1-2.4 us from all-reduces of 4 KiB to 8 MiB).
constexpr double kCollectiveStepLatencyS = 2e-6;
}  // namespace

LinkSpec shared_memory_link(const DeviceSpec& cpu) {
  return LinkSpec{"shared memory", Seconds(1e-6), cpu.memory_bandwidth / 2.0,
                  "estimate: one memory copy (read + write) at the CPU's memory bandwidth"};
}

LinkSpec process_shared_memory_link(const DeviceSpec& cpu) {
  return LinkSpec{"shared memory between processes", Seconds(kProcessWakeLatencyS),
                  cpu.memory_bandwidth / 4.0,
                  "estimate (not measured here: partita profile --refresh measures it): a process wake-up, "
                  "then two copies at the CPU's memory bandwidth"};
}

LinkSpec process_collective_link(const DeviceSpec& cpu) {
  return LinkSpec{"shared memory between processes (collectives)", Seconds(kCollectiveStepLatencyS),
                  cpu.memory_bandwidth / 4.0,
                  "estimate (not measured here: partita profile --refresh measures it): spinning members, "
                  "copies at the CPU's memory bandwidth"};
}

}  // namespace partita

#pragma once
// DeviceSpecs for CPUs: from a discovered CpuInfo (matched against the profile database when possible,
// estimated otherwise) and for core groups (a few cores of a CPU planned as a device of their own).
#include "partita/hardware/cpu_info.h"
#include "partita/hardware/device.h"
#include "partita/hardware/hardware_db.h"

namespace partita {

// The whole host CPU as a device.
// When `db` has a CPU profile whose name occurs in cpu.model_name, that profile is used (scaled to the
// discovered physical core count when a VM sees fewer cores) and the memory size is the discovered MemTotal.
// Otherwise figures are ESTIMATES (source says so): f32 peak = cores x clock x f32_lanes x 2 (FMA) x 2 FMA
// units (1 unit without AVX2/AVX-512); f64 = f32 / 2; bf16 = 2 x f32 with avx512_bf16, or
// cores x clock x 1024 with amx_bf16; memory bandwidth = 8 GB/s per core up to 200 GB/s (Linux does not tell
// it; a microbenchmark should replace it); TDP = 10 W per core, idle = 30 % of TDP; op_overhead = 5 us.
// An unknown clock is taken as 2 GHz. Pure, thread-safe.
DeviceSpec cpu_device_spec(const CpuInfo& cpu, const HardwareDb* db = nullptr);

// `cores` cores of a CPU whose whole-CPU spec is `whole_cpu` (whole_cpu.cores > 0).
// FLOP/s, TDP and idle power scale linearly with the share of cores. Memory bandwidth does NOT scale
// linearly: a few cores already draw a large share of the socket's bandwidth, so a group gets
// min(1, 2 x share) of it. Calibrated op-class fits scale alike (flops_rate x share, bandwidth x min(1, 2 x
// share), fixed costs unchanged). Memory size (shared) and op_overhead are unchanged. Throws partita::Error
// when cores is not in [1, whole_cpu.cores]. Pure, thread-safe.
DeviceSpec cpu_group_spec(const DeviceSpec& whole_cpu, int cores);

// The link between two core groups of one CPU: data moves by a memory copy (read + write), so
// bandwidth = memory_bandwidth / 2, latency 1 us (a cache-line handoff plus a wakeup; an estimate).
LinkSpec shared_memory_link(const DeviceSpec& cpu);
// Messages between two processes of one machine through the runtime's shared-memory mailbox, where `partita
// profile` has not measured them: the latency of waking the receiving process (an estimate from the 2-core
// development VM's measurement) and two copies (into the ring and out of it) at the CPU's memory bandwidth.
LinkSpec process_shared_memory_link(const DeviceSpec& cpu);
// A collective between processes of one machine through the runtime's shared-memory exchange, where `partita
// profile` has not measured it: members arriving together spin instead of sleeping (a few microseconds per
// ring step, an estimate), and copies at the CPU's memory bandwidth.
LinkSpec process_collective_link(const DeviceSpec& cpu);

}  // namespace partita

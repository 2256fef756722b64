#pragma once
// The host CPU as Linux describes it: /proc/cpuinfo, /proc/meminfo and /sys/devices/system/{cpu,node}.
// Discovery reads files only (no CPUID, no benchmarks), so a fake tree under a test folder stands in for a
// machine. Figures Linux does not give (peak FLOP/s, memory bandwidth) are estimated elsewhere
// (cpu_device_spec in local_cluster.h) and labelled as estimates.
#include <string>
#include <string_view>
#include <vector>

#include "partita/core/units.h"

namespace partita {

// One cache level as /sys/devices/system/cpu/cpu0/cache/index*/ reports it.
struct CpuCache {
  int level = 0;           // 1, 2, 3
  std::string type;        // "Data", "Instruction", "Unified"
  Bytes size{0};           // size of one instance
  int shared_by_cpus = 1;  // logical CPUs that share one instance (from shared_cpu_list)
};

struct CpuInfo {
  std::string model_name;  // "AMD EPYC 9654 96-Core Processor"
  std::string vendor;      // "AuthenticAMD", "GenuineIntel"
  int sockets = 0;
  int physical_cores = 0;  // over all sockets
  int threads = 0;         // logical CPUs (hardware threads) over all sockets
  int numa_nodes = 0;
  double mhz = 0;                 // nominal/max clock when sysfs gives it, else /proc/cpuinfo's "cpu MHz"
  std::vector<CpuCache> caches;   // cpu0's caches, as listed
  std::vector<std::string> simd;  // the SIMD/matrix flags present, from kSimdFlags, in that order
  Bytes memory_total{0};
  Bytes memory_available{0};

  bool has_flag(std::string_view flag) const;  // one of `simd`
  // Total size of one level's data/unified caches over the whole machine (instances x size); 0 when unknown.
  Bytes cache_bytes(int level) const;
  // Widest vector unit in 32-bit lanes: 16 (AVX-512), 8 (AVX/AVX2), 4 (SSE), 1 (none known).
  int f32_lanes() const;
};

// The flags `CpuInfo::simd` reports, when /proc/cpuinfo lists them.
inline constexpr std::string_view kSimdFlags[] = {
    "sse4_2",   "avx",      "avx2",        "fma",         "f16c",        "avx512f",
    "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
    "amx_tile", "amx_bf16", "amx_int8",    "asimd",       "sve"};

// Reads the CPU description under `root` ("/" for this machine; a test tree otherwise). Files that are absent
// leave their fields at defaults, except /proc/cpuinfo, which must exist (throws partita::Error naming the
// path). Sockets and cores come from the "physical id"/"core id" pairs, else from sysfs topology, else one
// core per logical CPU. Thread-safe (reads only).
CpuInfo discover_cpu(const std::string& root = "/");

// Parses a Linux CPU list ("0-3,8,10-11") into a count of CPUs; throws partita::Error on malformed text.
int count_cpu_list(std::string_view list);

}  // namespace partita

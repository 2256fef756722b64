#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "partita/hardware/cpu_info.h"

namespace partita {
namespace {

const std::string kData = PARTITA_SOURCE_DIR "/libs/hardware/tests/data/";

TEST(DiscoverCpu, FakeTwoSocketXeon) {
  const CpuInfo cpu = discover_cpu(kData + "fake_root_xeon");
  EXPECT_EQ(cpu.model_name, "Intel(R) Xeon(R) Platinum 8480+");
  EXPECT_EQ(cpu.vendor, "GenuineIntel");
  EXPECT_EQ(cpu.threads, 8);
  EXPECT_EQ(cpu.sockets, 2);
  EXPECT_EQ(cpu.physical_cores, 4);
  EXPECT_EQ(cpu.numa_nodes, 2);
  EXPECT_DOUBLE_EQ(cpu.mhz, 3800.0);  // cpuinfo_max_freq wins over "cpu MHz: 1900"
  EXPECT_EQ(cpu.memory_total.value(), 16384000LL * 1024);
  EXPECT_EQ(cpu.memory_available.value(), 12288000LL * 1024);
  const std::vector<std::string> simd = {"sse4_2",   "avx",      "avx2",     "fma",         "f16c",
                                         "avx512f",  "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                                         "amx_tile", "amx_bf16", "amx_int8"};
  EXPECT_EQ(cpu.simd, simd);
  EXPECT_TRUE(cpu.has_flag("amx_bf16"));
  EXPECT_FALSE(cpu.has_flag("vme"));  // not a SIMD flag: not reported
  EXPECT_EQ(cpu.f32_lanes(), 16);
  ASSERT_EQ(cpu.caches.size(), 4u);
  EXPECT_EQ(cpu.caches[0].level, 1);
  EXPECT_EQ(cpu.caches[0].type, "Data");
  EXPECT_EQ(cpu.caches[0].size.value(), 48 * 1024);
  EXPECT_EQ(cpu.caches[0].shared_by_cpus, 2);
  EXPECT_EQ(cpu.caches[3].size.value(), 105LL * 1024 * 1024);
  // L1d: 8 threads / 2 per instance = 4 instances x 48 KiB; L3: 2 instances (one per socket) x 105 MiB.
  EXPECT_EQ(cpu.cache_bytes(1).value(), 4 * 48 * 1024);
  EXPECT_EQ(cpu.cache_bytes(2).value(), 4 * 2048 * 1024);
  EXPECT_EQ(cpu.cache_bytes(3).value(), 2 * 105LL * 1024 * 1024);
}

TEST(DiscoverCpu, TopologyFromSysfsWhenCpuinfoLacksIt) {
  const CpuInfo cpu = discover_cpu(kData + "fake_root_vm");
  EXPECT_EQ(cpu.model_name, "");
  EXPECT_EQ(cpu.threads, 4);
  EXPECT_EQ(cpu.sockets, 1);
  EXPECT_EQ(cpu.physical_cores, 4);
  EXPECT_EQ(cpu.numa_nodes, 1);  // no node directory: one node
  EXPECT_EQ(cpu.simd, std::vector<std::string>{"asimd"});
  EXPECT_EQ(cpu.f32_lanes(), 4);
  EXPECT_TRUE(cpu.caches.empty());
  EXPECT_EQ(cpu.memory_total.value(), 4096000LL * 1024);
}

TEST(DiscoverCpu, MissingCpuinfoNamesThePath) {
  try {
    discover_cpu(kData + "no_such_root");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_root/proc/cpuinfo"), std::string::npos) << e.what();
  }
}

TEST(DiscoverCpu, ThisMachine) {
  const CpuInfo cpu = discover_cpu("/");
  EXPECT_GE(cpu.threads, 1);
  EXPECT_GE(cpu.physical_cores, 1);
  EXPECT_LE(cpu.physical_cores, cpu.threads);
  EXPECT_GT(cpu.memory_total.value(), 0);
}

TEST(CountCpuList, Ranges) {
  EXPECT_EQ(count_cpu_list("0"), 1);
  EXPECT_EQ(count_cpu_list("0-3"), 4);
  EXPECT_EQ(count_cpu_list("0-3,8,10-11"), 7);
  EXPECT_THROW(count_cpu_list("3-1"), Error);
  EXPECT_THROW(count_cpu_list("a"), Error);
}

}  // namespace
}  // namespace partita

#include "partita/hardware/machine_profile.h"

#include <cstdlib>

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "partita/hardware/device_json.h"

namespace partita {
namespace {

TEST(MachineProfile, JsonRoundTrip) {
  MachineProfile p;
  p.fingerprint = "cpu | 2 cores";
  p.key = stable_hash(p.fingerprint);
  p.date = "2026-11-01T00:00:00Z";
  p.gemm.push_back({"cpu", 512, DType::kBFloat16, 2, FlopsPerSecond(1e11)});
  p.thread_scaling.push_back({1, FlopsPerSecond(5e10), FlopsPerSecond(3e10), BytesPerSecond(1e10)});
  p.allreduce.push_back({Bytes(4096), Seconds(1e-4)});
  p.op_class_samples.push_back({"grouped_conv", "conv 2x32x56x56 g32", 2, Flops(3.6e6), Bytes(1'606'784),
                                Seconds(5.8e-5), Seconds(1.2e-4)});
  p.loopback = LinkSpec{"loopback", Seconds(2e-5), BytesPerSecond(3e9), "fit"};
  p.process_messages.push_back({Bytes(64), Seconds(5e-5)});
  p.process_link = LinkSpec{"shared memory between processes", Seconds(5e-5), BytesPerSecond(6e9), "fit"};
  p.process_allreduce.push_back({Bytes(4096), Seconds(2e-5)});
  p.process_collective_link =
      LinkSpec{"shared memory collectives", Seconds(4e-6), BytesPerSecond(5e9), "fit"};
  DeviceSpec cpu;
  cpu.name = "host";
  cpu.kind = DeviceKind::kCpu;
  cpu.peak_flops[DType::kFloat32] = FlopsPerSecond(5e10);
  cpu.memory_bandwidth = BytesPerSecond(1e10);
  cpu.measured = true;
  p.devices.push_back({"cpu", 1, cpu});
  p.notes.push_back("no GPU");
  const MachineProfile q = machine_profile_from_json(machine_profile_to_json(p));
  EXPECT_EQ(q.key, p.key);
  ASSERT_EQ(q.gemm.size(), 1u);
  EXPECT_EQ(q.gemm[0].dtype, DType::kBFloat16);
  ASSERT_TRUE(q.loopback.has_value());
  EXPECT_DOUBLE_EQ(q.loopback->bandwidth.value(), 3e9);
  ASSERT_TRUE(q.process_link.has_value());
  EXPECT_DOUBLE_EQ(q.process_link->latency.value(), 5e-5);
  ASSERT_EQ(q.process_messages.size(), 1u);
  EXPECT_DOUBLE_EQ(q.process_messages[0].time.value(), 5e-5);
  ASSERT_TRUE(q.process_collective_link.has_value());
  EXPECT_DOUBLE_EQ(q.process_collective_link->latency.value(), 4e-6);
  ASSERT_EQ(q.process_allreduce.size(), 1u);
  EXPECT_DOUBLE_EQ(q.process_allreduce[0].time.value(), 2e-5);
  // Profiles measured before the process link are still read, without one.
  Json older = machine_profile_to_json(p);
  older.erase("process_link");
  older.erase("process_messages");
  older.erase("process_collective_link");
  older.erase("process_allreduce");
  const MachineProfile r = machine_profile_from_json(older);
  EXPECT_FALSE(r.process_link.has_value());
  EXPECT_TRUE(r.process_messages.empty());
  EXPECT_FALSE(r.process_collective_link.has_value());
  ASSERT_NE(q.find("cpu"), nullptr);
  EXPECT_TRUE(q.find("cpu")->spec.measured);
  EXPECT_DOUBLE_EQ(q.find("cpu")->spec.flops_for(DType::kFloat32).value(), 5e10);
  EXPECT_EQ(q.find("cuda:0"), nullptr);
  ASSERT_EQ(q.op_class_samples.size(), 1u);
  const OpClassSample& s = q.op_class_samples[0];
  EXPECT_EQ(s.op_class, "grouped_conv");
  EXPECT_EQ(s.kernel, "conv 2x32x56x56 g32");
  EXPECT_EQ(s.threads, 2);
  EXPECT_DOUBLE_EQ(s.flops.value(), 3.6e6);
  EXPECT_EQ(s.bytes.value(), 1'606'784);
  EXPECT_DOUBLE_EQ(s.time.value(), 5.8e-5);
  EXPECT_DOUBLE_EQ(s.backward.value(), 1.2e-4);
}

TEST(MachineProfile, OlderCacheVersionIsRejected) {
  MachineProfile p;
  Json j = machine_profile_to_json(p);
  EXPECT_EQ(j.at("version").get<int>(), MachineProfile::kVersion);
  EXPECT_NO_THROW(machine_profile_from_json(j));
  // Version 1 caches predate the op-class calibration: they must be measured again, not used without it.
  j["version"] = 1;
  j.erase("op_class_samples");
  EXPECT_THROW(machine_profile_from_json(j), Error);
}

TEST(MachineProfile, IncompleteJsonIsAnError) {
  EXPECT_THROW(machine_profile_from_json(Json{{"version", 1}}), Error);
  EXPECT_THROW(device_spec_from_json(Json{{"name", "x"}}), Error);
}

TEST(MachineProfile, CacheDirFollowsXdg) {
  setenv("XDG_CACHE_HOME", "/tmp/xdg-test", 1);
  EXPECT_EQ(cache_dir(), "/tmp/xdg-test/partita");
  EXPECT_EQ(machine_profile_path("abc"), "/tmp/xdg-test/partita/machine-abc.json");
  EXPECT_EQ(stable_hash("x"), stable_hash("x"));
  EXPECT_NE(stable_hash("x"), stable_hash("y"));
  EXPECT_EQ(stable_hash("x").size(), 16u);
}

}  // namespace
}  // namespace partita

#include "partita/torch_bridge/microbench.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/hardware/cpu_spec.h"
#include "partita/torch_bridge/bench_kernels.h"
#include "partita/torch_bridge/machine_fingerprint.h"

namespace partita {
namespace {

const TimingOptions kFast{1, 2, 5, Seconds(0.01), {}};

// A generous ceiling: 100 TFLOP/s is far above any CPU's f32 rate today.
constexpr double kCeiling = 100e12;

TEST(Microbench, GemmRateIsPositiveAndBelowACeiling) {
  const FlopsPerSecond r = gemm_rate(128, DType::kFloat32, torch::kCPU, kFast);
  EXPECT_GT(r.value(), 1e6);
  EXPECT_LT(r.value(), kCeiling);
}

TEST(Microbench, ConvBandwidthAndOverheadAreSane) {
  EXPECT_GT(conv_rate(torch::kCPU, kFast).value(), 1e6);
  const BytesPerSecond bw = add_rate(Bytes(4 << 20), torch::kCPU, kFast);
  EXPECT_GT(bw.value(), 1e8);
  EXPECT_LT(bw.value(), 10e12);
  const Seconds op = tiny_op_time(true, kFast);
  EXPECT_GT(op.value(), 0.0);
  EXPECT_LT(op.value(), 1e-3);
}

TEST(Microbench, QuickProfileWithoutLoopbackMeasuresEveryCpuDevice) {
  MicrobenchOptions o;
  o.mode = ProfileMode::kQuick;  // no worker program: the loopback is skipped with a note
  const MachineProfile p = run_microbenchmarks(o);
  ASSERT_FALSE(p.thread_scaling.empty());
  ASSERT_NE(p.find("cpu"), nullptr);
  EXPECT_TRUE(p.find("cpu")->spec.measured);
  EXPECT_GT(p.find("cpu")->spec.flops_for(DType::kFloat32).value(), 0.0);
  EXPECT_LT(p.find("cpu")->spec.flops_for(DType::kFloat32).value(), kCeiling);
  EXPECT_GT(p.op_overhead_boxed.value(), 0.0);
  EXPECT_FALSE(p.loopback.has_value());
  EXPECT_EQ(p.key, machine_fingerprint().key());
  const MachineProfile back = machine_profile_from_json(machine_profile_to_json(p));
  EXPECT_EQ(back.devices.size(), p.devices.size());
  EXPECT_EQ(back.best_conv_threads, p.best_conv_threads);
  EXPECT_THROW(cpu_spec_at_threads(p, p.find("cpu")->spec, 1000), Error);
}

}  // namespace
}  // namespace partita

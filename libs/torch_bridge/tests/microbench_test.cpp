#include "partita/torch_bridge/microbench.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/graph/op_cost.h"
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
  // The calibration: generic ops of every class at every thread count, fitted into the measured specs.
  EXPECT_FALSE(p.op_class_samples.empty());
  EXPECT_EQ(back.op_class_samples.size(), p.op_class_samples.size());
  for (const char* cls : {"matmul", "conv", "grouped_conv", "norm", "elementwise", "reduction", "pool",
                          "memory", "recurrent"}) {
    EXPECT_TRUE(p.find("cpu")->spec.op_class_fits.contains(cls)) << cls;
  }
  EXPECT_FALSE(p.find("cpu")->spec.op_class_backward_fits.empty());
  // A recurrent sample is one kernel call's share: the LSTM's FLOPs over its calls.
  const auto lstm =
      std::find_if(p.op_class_samples.begin(), p.op_class_samples.end(),
                   [](const OpClassSample& s) { return s.kernel.starts_with("lstm 16x8x32->32"); });
  ASSERT_NE(lstm, p.op_class_samples.end());
  const int64_t calls = recurrent_kernel_calls("aten::lstm", 16, 1);
  EXPECT_EQ(lstm->kernel, fmt::format("lstm 16x8x32->32 (per call of {})", calls));
  EXPECT_DOUBLE_EQ(lstm->flops.value(), 16.0 * 8 * (2 * 128 * 64 + 2 * 128 + 128 + 24 * 32) / calls);
  const DeviceSpec one = cpu_spec_at_threads(p, p.find("cpu")->spec, 1);
  // The one-thread conv fit is there and predicts something (on a loaded machine the fit may keep only its
  // bandwidth term).
  const OpClassFit& conv = one.op_class_fits.at("conv");
  EXPECT_GT(conv.fixed.value() + conv.flops_rate.value() + conv.bandwidth.value(), 0.0);
  EXPECT_GT(conv.samples, 0);
}

TEST(Microbench, ClassKernelsCountWorkAndTimeForwardAndBackward) {
  const std::vector<ClassKernel> kernels = class_kernels(/*quick=*/true);
  ASSERT_FALSE(kernels.empty());
  for (const auto& k : kernels) {
    EXPECT_GT(k.bytes.value(), 0) << k.label;
    EXPECT_GE(k.flops.value(), 0.0) << k.label;
  }
  // linear 4x32->32 with bias: 2 x 4 x 32 x 32 + 4 x 32 FLOP; (4x32 + 32x32 + 32 + 4x32) x 4 bytes.
  const ClassKernel& linear = kernels.front();
  EXPECT_EQ(linear.op_class, "matmul");
  EXPECT_DOUBLE_EQ(linear.flops.value(), 2.0 * 4 * 32 * 32 + 4 * 32);
  EXPECT_EQ(linear.bytes.value(), (4 * 32 + 32 * 32 + 32 + 4 * 32) * 4);
  const ClassKernelTimes t = time_class_kernel(linear, kFast, Bytes(1 << 20), /*backward=*/true);
  EXPECT_GT(t.forward.value(), 0.0);
  EXPECT_LT(t.forward.value(), 0.1);
  EXPECT_GE(t.backward.value(), 0.0);
  EXPECT_EQ(time_class_kernel(linear, kFast, Bytes(0), /*backward=*/false).backward.value(), 0.0);
}

// A recurrent layer's kernel carries its kernel-call count (the graph library's) and FLOPs counted as the
// graph library counts that layer (OpCostCompute.RecurrentLayersCountTheirCellsUnrolled), and the profile
// records it per call: a 16-step LSTM's sample is a sixteenth-ish of its whole time.
TEST(Microbench, RecurrentKernelsAreRecordedPerKernelCall) {
  const std::vector<ClassKernel> kernels = class_kernels(/*quick=*/true);
  const auto lstm = std::find_if(kernels.begin(), kernels.end(),
                                 [](const ClassKernel& k) { return k.label == "lstm 16x8x32->32"; });
  ASSERT_NE(lstm, kernels.end());
  EXPECT_EQ(lstm->op_class, "recurrent");
  EXPECT_EQ(lstm->kernel_calls, recurrent_kernel_calls("aten::lstm", 16, 1));
  // Per token: 2 x 128 x (32 + 32) for the two linears, 2 x 128 for their biases, 128 gate adds, and per
  // hidden unit 3 sigmoids and 2 tanh (4 each), f*c + i*g and o*tanh(c): 24 x 32.
  EXPECT_DOUBLE_EQ(lstm->flops.value(), 16.0 * 8 * (2 * 128 * 64 + 2 * 128 + 128 + 24 * 32));
  // Operands: input, the two initial states, two matrices, two biases, and the output.
  EXPECT_EQ(lstm->bytes.value(), 4 * (16 * 8 * 32 + 2 * 8 * 32 + 128 * 64 + 2 * 128 + 16 * 8 * 32));
  // The backward is (forward + backward) - forward, clamped at 0: under load a fast timing can see the
  // recorded forward alone take longer (CI, 2026-12-05: 0). A kernel whose backward is not measured at all
  // gives 0 every time; three tries tell the two apart.
  ClassKernelTimes t;
  for (int attempt = 0; attempt < 3 && !(t.backward.value() > 0.0); ++attempt)
    t = time_class_kernel(*lstm, kFast, Bytes(1 << 20), /*backward=*/true);
  EXPECT_GT(t.forward.value(), 0.0);
  EXPECT_GT(t.backward.value(), 0.0);
}

TEST(Microbench, AnOlderCacheIsMeasuredAgain) {
  setenv("XDG_CACHE_HOME", ::testing::TempDir().c_str(), 1);
  MicrobenchOptions o;
  o.mode = ProfileMode::kQuick;
  const std::string path = machine_profile_path(machine_fingerprint().key());
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  Json stale = machine_profile_to_json(MachineProfile{});
  stale["version"] = 1;
  stale["fingerprint"] = machine_fingerprint().text();
  stale["quick"] = true;
  write_json_file(path, stale);
  const CachedProfile c = load_or_measure_profile(o, /*refresh=*/false);
  EXPECT_FALSE(c.from_cache);
  EXPECT_EQ(c.profile.version, MachineProfile::kVersion);
  EXPECT_FALSE(c.profile.op_class_samples.empty());
  // The fresh profile replaced the stale file and now serves from the cache.
  EXPECT_EQ(read_json_file(path).at("version").get<int>(), MachineProfile::kVersion);
  EXPECT_TRUE(load_or_measure_profile(o, /*refresh=*/false).from_cache);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace partita

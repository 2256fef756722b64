#include "partita/torch_bridge/memory_meter.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace partita {
namespace {

TEST(MemoryMeter, PeakRisesByAtLeastTheTensorAndCurrentFallsBack) {
  MemoryMeter& meter = MemoryMeter::install();
  EXPECT_TRUE(MemoryMeter::installed());
  meter.reset_peak();
  const Bytes before = meter.current_bytes();
  constexpr int64_t kElements = 1 << 20;  // 4 MiB of f32
  {
    torch::Tensor t = torch::ones({kElements});
    EXPECT_GE((meter.current_bytes() - before).value(), kElements * 4);
  }
  EXPECT_GE((meter.peak_bytes() - before).value(), kElements * 4);
  EXPECT_EQ(meter.current_bytes().value(), before.value());  // freed through the wrapper
  meter.reset_peak();
  EXPECT_EQ(meter.peak_bytes().value(), meter.current_bytes().value());
}

TEST(MemoryMeter, InstallIsIdempotentAndCountsOpsOutputs) {
  MemoryMeter& a = MemoryMeter::install();
  MemoryMeter& b = MemoryMeter::install();
  EXPECT_EQ(&a, &b);
  const int64_t allocs = a.allocations();
  const torch::Tensor x = torch::randn({256, 256});
  a.reset_peak();
  const Bytes base = a.current_bytes();
  const torch::Tensor y = torch::mm(x, x);
  EXPECT_GT(a.allocations(), allocs);
  EXPECT_GE((a.peak_bytes() - base).value(), 256 * 256 * 4);
}

}  // namespace
}  // namespace partita

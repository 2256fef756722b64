#include "partita/cost/update.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

DeviceSpec device(double bandwidth, double overhead) {
  DeviceSpec s;
  s.name = "test";
  s.memory_bandwidth = BytesPerSecond(bandwidth);
  s.op_overhead = Seconds(overhead);
  return s;
}

TEST(OptimizerUpdate, WorkCountsIncludeZeroingTheGradients) {
  EXPECT_EQ(optimizer_update_work(Optimizer::kSgd).passes, 4);
  EXPECT_EQ(optimizer_update_work(Optimizer::kSgd).ops_per_tensor, 2);
  EXPECT_EQ(optimizer_update_work(Optimizer::kSgdMomentum).passes, 9);
  EXPECT_EQ(optimizer_update_work(Optimizer::kAdam).passes, 22);
  EXPECT_EQ(optimizer_update_work(Optimizer::kAdamW).passes, 24);
  EXPECT_EQ(optimizer_update_work(Optimizer::kAdamW).ops_per_tensor, 10);
}

TEST(OptimizerUpdate, TimeIsPassesOverBandwidthPlusOverheadPerOp) {
  // 1 GB of parameters in 10 tensors at 10 GB/s, 1 us per op. Adam: 22 passes of 0.1 s, 9 ops x 10 tensors.
  const Seconds t = optimizer_step_time(Bytes(1'000'000'000), 10, Optimizer::kAdam, device(10e9, 1e-6));
  EXPECT_NEAR(t.value(), 2.2 + 90e-6, 1e-9);
  // Plain SGD over the same: 4 passes, 2 ops per tensor.
  EXPECT_NEAR(optimizer_step_time(Bytes(1'000'000'000), 10, Optimizer::kSgd, device(10e9, 1e-6)).value(),
              0.4 + 20e-6, 1e-9);
}

TEST(OptimizerUpdate, ACalibratedElementwiseClassWins) {
  DeviceSpec s = device(10e9, 1e-6);
  OpClassFit fit;
  fit.fixed = Seconds(5e-6);
  fit.bandwidth = BytesPerSecond(20e9);
  s.op_class_fits["elementwise"] = fit;
  // SGD: 4 passes of 1 GB at 20 GB/s, 2 ops x 10 tensors at 5 us.
  EXPECT_NEAR(optimizer_step_time(Bytes(1'000'000'000), 10, Optimizer::kSgd, s).value(), 0.2 + 100e-6, 1e-9);
}

TEST(OptimizerUpdate, NothingToUpdateCostsNothingAndBadInputIsRefused) {
  EXPECT_EQ(optimizer_step_time(Bytes(0), 0, Optimizer::kAdam, device(0, 1e-6)).value(), 0);
  EXPECT_THROW(optimizer_step_time(Bytes(1000), 1, Optimizer::kAdam, device(0, 1e-6)), Error);
  EXPECT_THROW(optimizer_step_time(Bytes(1000), -1, Optimizer::kAdam, device(1e9, 0)), Error);
}

}  // namespace
}  // namespace partita

#include "partita/cost/update.h"

#include <gtest/gtest.h>

#include <algorithm>

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

std::vector<Bytes> mib(std::initializer_list<int64_t> sizes) {
  std::vector<Bytes> out;
  for (int64_t s : sizes) out.emplace_back(s << 20);
  return out;
}

TEST(SplitUpdate, LargestFirstToTheWorkerThatFinishesFirst) {
  // 100 -> 0; 60 -> 1; 50 -> 1 (110 < 150); 40 -> 0 (140 < 150); 10 -> 1 (120 < 150).
  EXPECT_EQ(split_update(mib({40, 100, 10, 60, 50}), {1.0, 1.0}), (std::vector<int>{0, 0, 1, 1, 1}));
  // Equal sizes go in order, alternating between equal workers.
  EXPECT_EQ(split_update(mib({8, 8, 8, 8}), {1.0, 1.0}), (std::vector<int>{0, 1, 0, 1}));
  // One worker takes everything; no tensors, nothing.
  EXPECT_EQ(split_update(mib({3, 1, 2}), {2.0}), (std::vector<int>{0, 0, 0}));
  EXPECT_TRUE(split_update({}, {1.0, 1.0}).empty());
}

TEST(SplitUpdate, AFasterWorkerTakesMore) {
  // Twice the speed: 3 to the fast one (3/2 < 3/1), 2 to the slow one (2/1 < 5/2), 1 to the fast one
  // (4/2 < 3/1).
  EXPECT_EQ(split_update(mib({3, 2, 1}), {2.0, 1.0}), (std::vector<int>{0, 1, 0}));
  // Four equal tensors over speeds 3 and 1: three to the fast one.
  const std::vector<int> w = split_update(mib({5, 5, 5, 5}), {3.0, 1.0});
  EXPECT_EQ(std::count(w.begin(), w.end(), 0), 3);
}

// A small CNN's step: one 72 KiB weight and ten tensors of 1 KiB. By bytes alone the big one's worker would
// take nothing else, though each small tensor costs a fixed chain of ops: weighing 72 + 16 against 1 + 16
// KiB, the small ones go five to worker 1 (85), the sixth too (102 < 105), then alternate: two to worker 0.
TEST(SplitUpdate, ManySmallTensorsWeighTheirFixedCost) {
  std::vector<Bytes> sizes{Bytes(72 * 1024)};
  for (int i = 0; i < 10; ++i) sizes.emplace_back(1024);
  const std::vector<int> w = split_update(sizes, {1.0, 1.0});
  EXPECT_EQ(w[0], 0);
  EXPECT_EQ(std::count(w.begin() + 1, w.end(), 0), 2);
  EXPECT_EQ(std::count(w.begin() + 1, w.end(), 1), 8);
}

TEST(SplitUpdate, RefusesNoWorkersAndSpeedsThatAreNotPositive) {
  EXPECT_THROW(split_update(mib({1}), {}), Error);
  EXPECT_THROW(split_update(mib({1}), {1.0, 0.0}), Error);
  EXPECT_THROW(split_update(mib({1}), {-1.0}), Error);
}

}  // namespace
}  // namespace partita

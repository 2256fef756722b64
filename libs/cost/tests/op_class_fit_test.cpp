#include "partita/cost/op_class_fit.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

TimedOp op(double flops, int64_t bytes, double seconds) {
  return TimedOp{Flops(flops), Bytes(bytes), Seconds(seconds)};
}

TEST(OpClassFit, RecoversFixedCostAndBandwidthOfACopyClass) {
  // fixed 10 us, 20 GB/s: 1e6 B -> 10 + 50 us; 1e7 B -> 10 + 500 us; 4e7 B -> 10 + 2000 us.
  const OpClassFit fit =
      fit_op_class({op(0, 1'000'000, 60e-6), op(0, 10'000'000, 510e-6), op(0, 40'000'000, 2010e-6)});
  EXPECT_NEAR(fit.fixed.value(), 10e-6, 0.1e-6);
  EXPECT_NEAR(fit.bandwidth.value(), 20e9, 0.2e9);
  EXPECT_EQ(fit.flops_rate.value(), 0.0);  // no FLOPs: the term never binds
  EXPECT_FALSE(fit.additive);
  EXPECT_EQ(fit.samples, 3);
  EXPECT_LT(fit.rms_relative_error, 0.01);
}

TEST(OpClassFit, RecoversTheOverlappingRoofline) {
  // fixed 2 us, 100 GFLOP/s, 10 GB/s, time = fixed + max(F / rate, B / bandwidth):
  //   1e6 FLOP, 1e4 B: max(10 us, 1 us) -> 12 us      1e8 FLOP, 1e5 B: max(1000, 10) -> 1002 us
  //   1e5 FLOP, 1e6 B: max(1 us, 100 us) -> 102 us    1e7 FLOP, 1e7 B: max(100, 1000) -> 1002 us
  //   1e4 FLOP, 1e3 B: max(0.1, 0.1) -> 2.1 us
  const OpClassFit fit =
      fit_op_class({op(1e6, 10'000, 12e-6), op(1e8, 100'000, 1002e-6), op(1e5, 1'000'000, 102e-6),
                    op(1e7, 10'000'000, 1002e-6), op(1e4, 1'000, 2.1e-6)});
  EXPECT_NEAR(fit.fixed.value(), 2e-6, 0.05e-6);
  EXPECT_NEAR(fit.flops_rate.value(), 100e9, 1e9);
  EXPECT_NEAR(fit.bandwidth.value(), 10e9, 0.1e9);
  EXPECT_FALSE(fit.additive);
  EXPECT_LT(fit.rms_relative_error, 0.01);
}

TEST(OpClassFit, PicksTheAdditiveFormWhenTrafficAndArithmeticDoNotOverlap) {
  // fixed 5 us, 100 GFLOP/s, 10 GB/s, time = fixed + F / rate + B / bandwidth:
  //   1e8 FLOP, 1e6 B: 1000 + 100 -> 1105 us     1e6 FLOP, 1e7 B: 10 + 1000 -> 1015 us
  //   1e7 FLOP, 1e7 B: 100 + 1000 -> 1105 us     1e6 FLOP, 1e5 B: 10 + 10 -> 25 us
  const OpClassFit fit = fit_op_class({op(1e8, 1'000'000, 1105e-6), op(1e6, 10'000'000, 1015e-6),
                                       op(1e7, 10'000'000, 1105e-6), op(1e6, 100'000, 25e-6)});
  EXPECT_TRUE(fit.additive);
  EXPECT_NEAR(fit.fixed.value(), 5e-6, 0.1e-6);
  EXPECT_NEAR(fit.flops_rate.value(), 100e9, 1e9);
  EXPECT_NEAR(fit.bandwidth.value(), 10e9, 0.1e9);
}

TEST(OpClassFit, DropsASampleFarOffTheRest) {
  // fixed 1 us, 10 GB/s; the 1e6-byte sample took 50x its 101 us (a stalled thread pool).
  const OpClassFit fit =
      fit_op_class({op(0, 1'000, 1.1e-6), op(0, 10'000, 2e-6), op(0, 100'000, 11e-6),
                    op(0, 1'000'000, 5050e-6), op(0, 4'000'000, 401e-6), op(0, 10'000'000, 1001e-6)});
  EXPECT_EQ(fit.samples, 5);
  EXPECT_NEAR(fit.fixed.value(), 1e-6, 0.02e-6);
  EXPECT_NEAR(fit.bandwidth.value(), 10e9, 0.1e9);
}

TEST(OpClassFit, RejectsTooFewSamplesBadTimesAndNoWork) {
  EXPECT_THROW(fit_op_class({op(1, 1, 1e-6)}), Error);
  EXPECT_THROW(fit_op_class({op(1, 1, 1e-6), op(2, 2, 0)}), Error);
  EXPECT_THROW(fit_op_class({op(0, 0, 1e-6), op(0, 0, 2e-6)}), Error);
}

TEST(OpClassFit, TimeOfAnOpUnderAFit) {
  OpClassFit fit;
  fit.fixed = Seconds(1e-6);
  fit.flops_rate = FlopsPerSecond(100e9);
  fit.bandwidth = BytesPerSecond(10e9);
  // 2e6 FLOP -> 20 us, 1e5 B -> 10 us: 1 + max(20, 10) = 21 us; additive: 1 + 20 + 10 = 31 us.
  EXPECT_NEAR(op_class_fit_time(fit, Flops(2e6), Bytes(100'000)).value(), 21e-6, 1e-12);
  fit.additive = true;
  EXPECT_NEAR(op_class_fit_time(fit, Flops(2e6), Bytes(100'000)).value(), 31e-6, 1e-12);
  fit.flops_rate = FlopsPerSecond(0);  // no FLOP term
  EXPECT_NEAR(op_class_fit_time(fit, Flops(2e6), Bytes(100'000)).value(), 11e-6, 1e-12);
}

TEST(OpClassFit, FitsPerClassThreadCountAndPass) {
  std::vector<OpClassSample> samples;
  // "memory" at 1 thread: fixed 1 us, 10 GB/s forward; backward twice as slow (fixed 2 us, 5 GB/s).
  for (int64_t b : {10'000, 1'000'000, 10'000'000}) {
    const double fwd = 1e-6 + static_cast<double>(b) / 10e9;
    samples.push_back({"memory", "copy", 1, Flops(0), Bytes(b), Seconds(fwd), Seconds(2 * fwd)});
  }
  samples.push_back({"memory", "copy", 2, Flops(0), Bytes(1000), Seconds(1e-6), Seconds(0)});  // other count
  samples.push_back({"norm", "one", 1, Flops(10), Bytes(1000), Seconds(1e-6), Seconds(0)});    // one sample
  const auto forward = fit_op_classes(samples, 1);
  ASSERT_EQ(forward.size(), 1u);
  EXPECT_NEAR(forward.at("memory").bandwidth.value(), 10e9, 0.1e9);
  const auto backward = fit_op_classes(samples, 1, FitPass::kBackward);
  ASSERT_EQ(backward.size(), 1u);
  EXPECT_NEAR(backward.at("memory").fixed.value(), 2e-6, 0.05e-6);
  EXPECT_NEAR(backward.at("memory").bandwidth.value(), 5e9, 0.05e9);
  EXPECT_TRUE(fit_op_classes(samples, 2).empty());
  EXPECT_TRUE(fit_op_classes(samples, 2, FitPass::kBackward).empty());
}

}  // namespace
}  // namespace partita

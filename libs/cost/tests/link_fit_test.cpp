#include "partita/cost/link_fit.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "partita/cost/comm.h"

namespace partita {
namespace {

TEST(LinkFit, RecoversAlphaBetaOfRingModel) {
  const LinkSpec truth{"t", Seconds(20e-6), BytesPerSecond(2e9), ""};
  std::vector<TimedTransfer> samples;
  for (int64_t n : {4096, 65536, 1 << 20, 8 << 20}) {
    samples.push_back({Bytes(n), allreduce_ring_time(Bytes(n), 2, truth)});
  }
  const LinkSpec fit = fit_allreduce_link(samples, 2, "loopback", "test");
  EXPECT_NEAR(fit.latency.value(), 20e-6, 1e-9);
  EXPECT_NEAR(fit.bandwidth.value(), 2e9, 1e3);
  EXPECT_EQ(fit.name, "loopback");
}

TEST(LinkFit, RecoversAlphaBetaOfOneWayMessages) {
  const LinkSpec truth{"t", Seconds(35e-6), BytesPerSecond(3e9), ""};
  std::vector<TimedTransfer> samples;
  for (int64_t n : {64, 65536, 1 << 20, 8 << 20}) samples.push_back({Bytes(n), p2p_time(Bytes(n), truth)});
  const LinkSpec fit = fit_message_link(samples, "shared memory", "test");
  EXPECT_NEAR(fit.latency.value(), 35e-6, 1e-9);
  EXPECT_NEAR(fit.bandwidth.value(), 3e9, 1e3);
  EXPECT_EQ(fit.name, "shared memory");
  EXPECT_THROW(fit_message_link({{Bytes(10), Seconds(2)}, {Bytes(20), Seconds(1)}}, "x", ""), Error);
}

TEST(LinkFit, RejectsOneSizeAndFlatTimes) {
  EXPECT_THROW(fit_allreduce_link({{Bytes(10), Seconds(1)}, {Bytes(10), Seconds(2)}}, 2, "x", ""), Error);
  EXPECT_THROW(fit_allreduce_link({{Bytes(10), Seconds(2)}, {Bytes(20), Seconds(1)}}, 2, "x", ""), Error);
  EXPECT_THROW(fit_allreduce_link({{Bytes(10), Seconds(1)}, {Bytes(20), Seconds(2)}}, 1, "x", ""), Error);
}

}  // namespace
}  // namespace partita

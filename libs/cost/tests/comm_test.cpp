#include "partita/cost/comm.h"

#include <cmath>

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

const LinkSpec kLink{"test 100 GB/s", Seconds(5e-6), BytesPerSecond(100e9), ""};
const Bytes kOneGb(1'000'000'000);

TEST(Comm, PointToPoint) {
  // 5 us + 1e9 / 1e11 s = 0.010005 s.
  EXPECT_DOUBLE_EQ(p2p_time(kOneGb, kLink).value(), 0.010005);
  EXPECT_DOUBLE_EQ(p2p_time(Bytes(0), kLink).value(), 5e-6);
}

TEST(Comm, RingAllReduceOneGbOverFour) {
  // 2 (4-1) x 5 us = 30 us; 2 (4-1)/4 x 1e9 / 1e11 = 1.5 x 0.01 = 0.015 s.
  EXPECT_NEAR(allreduce_ring_time(kOneGb, 4, kLink).value(), 0.01503, 1e-12);
}

TEST(Comm, TreeAllReduce) {
  // 2 ceil(log2 4) (5 us + 0.01 s) = 4 x 0.010005 = 0.04002 s.
  EXPECT_NEAR(allreduce_tree_time(kOneGb, 4, kLink).value(), 0.04002, 1e-12);
  // p = 5: ceil(log2 5) = 3 -> 6 x 0.010005.
  EXPECT_NEAR(allreduce_tree_time(kOneGb, 5, kLink).value(), 0.06003, 1e-12);
}

TEST(Comm, AllReducePicksTheCheaper) {
  EXPECT_NEAR(allreduce_time(kOneGb, 4, kLink).value(), 0.01503, 1e-12);  // ring for large buffers
  // 1 kB over 8: ring 14 x 5 us + 1.75 x 1e-8 = 70.0175 us; tree 6 x (5 us + 0.01 us) = 30.06 us.
  EXPECT_NEAR(allreduce_ring_time(Bytes(1000), 8, kLink).value(), 70.0175e-6, 1e-15);
  EXPECT_NEAR(allreduce_time(Bytes(1000), 8, kLink).value(), 30.06e-6, 1e-15);
}

TEST(Comm, AllGatherAndReduceScatter) {
  // 3 x 5 us + 3/4 x 0.01 s = 0.007515 s.
  EXPECT_NEAR(allgather_time(kOneGb, 4, kLink).value(), 0.007515, 1e-12);
  EXPECT_NEAR(reduce_scatter_time(kOneGb, 4, kLink).value(), 0.007515, 1e-12);
}

TEST(Comm, OneParticipantIsFreeAndBadInputsThrow) {
  EXPECT_EQ(allreduce_time(kOneGb, 1, kLink).value(), 0.0);
  EXPECT_EQ(allgather_time(kOneGb, 1, kLink).value(), 0.0);
  EXPECT_THROW(allreduce_ring_time(kOneGb, 0, kLink), Error);
  EXPECT_THROW(p2p_time(Bytes(-1), kLink), Error);
  EXPECT_THROW(p2p_time(kOneGb, LinkSpec{"dead", Seconds(0), BytesPerSecond(0), ""}), Error);
}

TEST(Comm, SlowestLinkOfARing) {
  Cluster c;
  c.name = "two nodes";
  c.devices = {{"a0", "n0", {}}, {"a1", "n0", {}}, {"b0", "n1", {}}};
  c.intra_node_link = LinkSpec{"NVLink 4", Seconds(2e-6), BytesPerSecond(450e9), ""};
  c.inter_node_link = LinkSpec{"InfiniBand NDR", Seconds(2e-6), BytesPerSecond(50e9), ""};
  EXPECT_EQ(slowest_link(c, {"a0", "a1"}).name, "NVLink 4");
  EXPECT_EQ(slowest_link(c, {"a0", "a1", "b0"}).name, "InfiniBand NDR");
  const LinkSpec self = slowest_link(c, {"b0"});
  EXPECT_TRUE(std::isinf(self.bandwidth.value()));
  EXPECT_EQ(allreduce_time(kOneGb, 1, self).value(), 0.0);
  EXPECT_THROW(slowest_link(c, {"a0", "zz"}), Error);
  c.inter_node_link.reset();
  EXPECT_THROW(slowest_link(c, {"a0", "b0"}), Error);
}

}  // namespace
}  // namespace partita

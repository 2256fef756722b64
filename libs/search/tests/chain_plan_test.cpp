#include "partita/search/chain_plan.h"

#include <gtest/gtest.h>

#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

TEST(ChainPlan, MicrobatchCandidatesDivideTheBatch) {
  SearchOptions o;
  o.global_batch = 12;
  o.max_microbatches = 6;
  EXPECT_EQ(microbatch_candidates(o, 1), (std::vector<int>{1, 2, 3, 4, 6}));
  EXPECT_EQ(microbatch_candidates(o, 4), (std::vector<int>{1, 2, 3}));
}

TEST(ChainPlan, MarksUnusedDevicesOnce) {
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("a", 1)}, make_link(10));
  Plan p;
  p.groups.push_back(DeviceGroup{{"d0"}, {1}, GroupParallelism::kData});
  mark_unused_devices(p, c, "why");
  mark_unused_devices(p, c, "again");
  ASSERT_EQ(p.unused_devices.size(), 1u);
  EXPECT_EQ(p.unused_devices[0].device, "d1");
  EXPECT_EQ(p.unused_devices[0].reason, "why");
}

}  // namespace
}  // namespace partita

#include "partita/search/plan.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "test_support.h"

namespace partita {
namespace {

Plan plan_for(const Graph& g) {
  Plan p;
  p.graph = graph_identity(g);
  p.global_batch = 4;
  p.microbatches = 2;
  p.groups = {DeviceGroup{{"d0"}, {2}, GroupParallelism::kData},
              DeviceGroup{{"d1"}, {2}, GroupParallelism::kData}};
  p.stages = {Stage{0, 0, 0, Checkpointing::kNone, Offload::kNone},
              Stage{1, 2, 1, Checkpointing::kFull, Offload::kNone}};
  return p;
}

TEST(Plan, ChecksAgainstItsGraph) {
  const Graph g = testing::chain_graph({1, 1, 1}, {4, 4, 4}, {4, 4, 4});
  const Graph other = testing::chain_graph({1, 1}, {4, 4}, {4, 4});
  EXPECT_NO_THROW(plan_for(g).check_against(g));
  EXPECT_THROW(plan_for(g).check_against(other), Error);
  Plan gap = plan_for(g);
  gap.stages[1].first = 2;
  EXPECT_THROW(gap.check_against(g), Error);
  Plan shares = plan_for(g);
  shares.groups[0].batch_shares = {3};
  EXPECT_THROW(shares.check_against(g), Error);
  Plan twice = plan_for(g);
  twice.groups[1].devices = {"d0"};
  EXPECT_THROW(twice.check_against(g), Error);
  // Checkpointing keeps no activations to offload: the pair is refused, each alone is fine.
  Plan both = plan_for(g);
  both.stages[1].offload = Offload::kActivations;
  EXPECT_THROW(both.check_against(g), Error);
  both.stages[1].checkpointing = Checkpointing::kNone;
  both.stages[1].offload = Offload::kActivationsAndOptimizerState;
  EXPECT_NO_THROW(both.check_against(g));
  both.stages[1].checkpointing = Checkpointing::kFull;
  both.stages[1].offload = Offload::kOptimizerState;
  EXPECT_NO_THROW(both.check_against(g));
}

TEST(Plan, SplitsTheBatchWithMicrobatchesOrDataGroups) {
  const Graph g = testing::chain_graph({1, 1, 1}, {4, 4, 4}, {4, 4, 4});
  Plan p = plan_for(g);
  EXPECT_TRUE(p.splits_batch());  // two microbatches
  p.microbatches = 1;
  p.groups[0].batch_shares = p.groups[1].batch_shares = {4};
  EXPECT_FALSE(p.splits_batch());
  p.groups[1] = DeviceGroup{{"d1", "d2"}, {4, 4}, GroupParallelism::kTensor};  // each sees it all
  EXPECT_FALSE(p.splits_batch());
  p.groups[1] = DeviceGroup{{"d1", "d2"}, {1, 3}, GroupParallelism::kData};
  EXPECT_TRUE(p.splits_batch());
  EXPECT_EQ(p.smallest_share(), 1);
  p.groups[1] = DeviceGroup{{"d1", "d2"}, {4, 4}, GroupParallelism::kTensor};
  EXPECT_EQ(p.smallest_share(), 4);
  p.microbatches = 2;
  p.groups[0].batch_shares = p.groups[1].batch_shares = {2};
  EXPECT_EQ(p.smallest_share(), 2);
}

// A kTensor group of 4 devices with tensor_size 2: two replicas, each a 2-way tensor-parallel group whose
// devices run the same samples.
TEST(Plan, TensorGroupsOfReplicas) {
  const Graph g = testing::chain_graph({1, 1, 1}, {4, 4, 4}, {4, 4, 4});
  Plan p = plan_for(g);
  p.groups[1] = DeviceGroup{{"d1", "d2", "d3", "d4"}, {1, 1, 1, 1}, GroupParallelism::kTensor, 2};
  EXPECT_NO_THROW(p.check_against(g));
  EXPECT_EQ(p.groups[1].tensor_degree(), 2);
  EXPECT_EQ(p.groups[1].replicas(), 2);
  EXPECT_NE(p.to_string().find("as 2 replicas of 2-way tensor parallelism"), std::string::npos);
  p.microbatches = 1;
  p.groups[0].batch_shares = {4};
  p.groups[1].batch_shares = {1, 1, 3, 3};  // uneven replicas are fine
  EXPECT_NO_THROW(p.check_against(g));
  EXPECT_TRUE(p.splits_batch());            // the replicas split it
  p.groups[1].batch_shares = {1, 3, 1, 3};  // but not a tensor group's devices
  EXPECT_THROW(p.check_against(g), Error);
  p.groups[1].batch_shares = {1, 1, 3, 3};
  p.groups[1].tensor_size = 3;
  EXPECT_THROW(p.check_against(g), Error);
  p.groups[1].tensor_size = 0;  // all four: one group that sees the whole microbatch
  p.groups[1].batch_shares = {4, 4, 4, 4};
  EXPECT_NO_THROW(p.check_against(g));
  EXPECT_EQ(p.groups[1].replicas(), 1);
  EXPECT_FALSE(p.splits_batch());
}

// Which stages read each parameter: by node range, by branch node list, and a weight two stages share.
TEST(Plan, ParameterStagesFollowTheNodes) {
  const Graph g = testing::chain_graph({1, 1, 1}, {4, 4, 4}, {4, 4, 4});
  Plan ranges = plan_for(g);
  EXPECT_EQ(ranges.parameter_stages(g), (std::vector<std::vector<int>>{{0}, {1}, {1}}));
  Plan lists = plan_for(g);
  lists.stages[0].nodes = {0, 2};
  lists.stages[1].nodes = {1};
  EXPECT_EQ(lists.parameter_stages(g), (std::vector<std::vector<int>>{{0}, {1}, {0}}));

  Graph tied;
  ValueId x = tied.add_input("x");
  const ValueId w = tied.add_parameter("w", true);
  for (int i = 0; i < 2; ++i) {
    const ValueId y = tied.add_value(ValueKind::kTensor, "y" + std::to_string(i));
    tied.add_node("aten::linear", {x, w}, {y});
    x = y;
  }
  Plan two = plan_for(tied);
  two.stages = {Stage{0, 0, 0}, Stage{1, 1, 1}};
  EXPECT_EQ(two.parameter_stages(tied), (std::vector<std::vector<int>>{{0, 1}}));
}

TEST(Plan, ToStringNamesStagesDevicesAndChoices) {
  const Graph g = testing::chain_graph({1, 1, 1}, {4, 4, 4}, {4, 4, 4});
  Plan p = plan_for(g);
  p.unused_devices.push_back(UnusedDevice{"d2", "too slow"});
  const std::string s = p.to_string();
  EXPECT_NE(s.find("stage 1: nodes 1..2"), std::string::npos) << s;
  EXPECT_NE(s.find("checkpointing full"), std::string::npos) << s;
  EXPECT_NE(s.find("unused d2: too slow"), std::string::npos) << s;
  EXPECT_EQ(p.used_devices(), (std::vector<std::string>{"d0", "d1"}));
}

// What a job of a process per stage or per device can switch to between steps (rebalancing across processes).
TEST(Plan, OnTheSameDevicesKeepsEveryProcessOnItsDevices) {
  const Graph g = testing::chain_graph({1, 1, 1}, {4, 4, 4}, {4, 4, 4});
  const Plan pipeline = plan_for(g);  // d0: node 0, d1: nodes 1-2
  Plan moved = pipeline;              // the cut moves
  moved.stages[0].last = 1;
  moved.stages[1].first = 2;
  ASSERT_TRUE(on_the_same_devices(moved, pipeline).has_value());
  EXPECT_EQ(on_the_same_devices(moved, pipeline)->stages[0].last, 1);
  Plan swapped = pipeline;  // stage 0 on d1, stage 1 on d0: each runs in the process holding its device
  std::swap(swapped.groups[0], swapped.groups[1]);
  ASSERT_TRUE(on_the_same_devices(swapped, pipeline).has_value());
  EXPECT_EQ(on_the_same_devices(swapped, pipeline)->groups[0].devices, std::vector<std::string>{"d1"});
  Plan elsewhere = pipeline;  // a device no process holds
  elsewhere.groups[1].devices = {"d2"};
  EXPECT_FALSE(on_the_same_devices(elsewhere, pipeline).has_value());
  Plan doubled = pipeline;  // both stages on d0's process
  doubled.groups[1].devices = {"d0"};
  EXPECT_FALSE(on_the_same_devices(doubled, pipeline).has_value());
  Plan branches = pipeline;
  branches.stages[0].nodes = {0};
  branches.stages[1].nodes = {1, 2};
  EXPECT_FALSE(on_the_same_devices(branches, pipeline).has_value()) << "a branch layout for a pipeline";
  EXPECT_FALSE(on_the_same_devices(pipeline, branches).has_value()) << "a pipeline for a branch layout";
  Plan relisted = branches;  // a branch plan's node lists move between the processes' devices
  relisted.stages[0].nodes = {0, 2};
  relisted.stages[1].nodes = {1};
  ASSERT_TRUE(on_the_same_devices(relisted, branches).has_value());
  EXPECT_EQ(on_the_same_devices(relisted, branches)->stages[0].nodes, (std::vector<NodeId>{0, 2}));
  std::swap(relisted.groups[0], relisted.groups[1]);
  EXPECT_TRUE(on_the_same_devices(relisted, branches).has_value()) << "each list runs where its device is";
  relisted.groups[1].devices = {"d2"};
  EXPECT_FALSE(on_the_same_devices(relisted, branches).has_value());
  Plan tensor = pipeline;
  tensor.groups[1] = DeviceGroup{{"d1", "d2"}, {2, 2}, GroupParallelism::kTensor};
  EXPECT_FALSE(on_the_same_devices(tensor, pipeline).has_value());

  Plan data;  // one stage over d0 (share 1) and d1 (share 3)
  data.graph = graph_identity(g);
  data.global_batch = 4;
  data.groups = {DeviceGroup{{"d0", "d1"}, {1, 3}, GroupParallelism::kData}};
  data.stages = {Stage{0, 2, 0}};
  EXPECT_FALSE(on_the_same_devices(data, pipeline).has_value()) << "another number of stages";
  Plan reordered = data;  // the planner listed d1 first, with 1 sample, and d0 with 3
  reordered.groups[0] = DeviceGroup{{"d1", "d0"}, {1, 3}, GroupParallelism::kData};
  const std::optional<Plan> back = on_the_same_devices(reordered, data);
  ASSERT_TRUE(back.has_value());  // back in rank order, each device with its new share
  EXPECT_EQ(back->groups[0].devices, (std::vector<std::string>{"d0", "d1"}));
  EXPECT_EQ(back->groups[0].batch_shares, (std::vector<int>{3, 1}));
  Plan fewer = data;
  fewer.groups[0] = DeviceGroup{{"d0"}, {4}, GroupParallelism::kData};
  EXPECT_FALSE(on_the_same_devices(fewer, data).has_value());
  Plan other = data;
  other.groups[0].devices = {"d0", "d2"};
  EXPECT_FALSE(on_the_same_devices(other, data).has_value());
}

TEST(Plan, EnumNamesRoundTrip) {
  EXPECT_EQ(parse_schedule(schedule_name(Schedule::kOneFOneB)), Schedule::kOneFOneB);
  EXPECT_EQ(parse_offload("optimizer_state"), Offload::kOptimizerState);
  for (Offload o : {Offload::kNone, Offload::kOptimizerState, Offload::kActivations,
                    Offload::kActivationsAndOptimizerState})
    EXPECT_EQ(parse_offload(offload_name(o)), o);
  EXPECT_TRUE(offloads_activations(Offload::kActivationsAndOptimizerState));
  EXPECT_TRUE(offloads_optimizer_state(Offload::kActivationsAndOptimizerState));
  EXPECT_FALSE(offloads_activations(Offload::kOptimizerState));
  EXPECT_FALSE(offloads_optimizer_state(Offload::kActivations));
  EXPECT_THROW(parse_offload("weights"), Error);
  EXPECT_EQ(parse_checkpointing("full"), Checkpointing::kFull);
  EXPECT_EQ(parse_group_parallelism("tensor"), GroupParallelism::kTensor);
  EXPECT_THROW(parse_schedule("pipedream"), Error);
}

}  // namespace
}  // namespace partita

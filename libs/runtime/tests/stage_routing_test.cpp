#include "partita/runtime/stage_routing.h"

#include <gtest/gtest.h>

#include "partita/graph/analysis.h"

namespace partita {

namespace {

ValueId tensor_input(Graph& g, const std::string& name) {
  const ValueId v = g.add_input(name);
  g.value(v).tensors.push_back(TensorMeta{{8, 16}, DType::kFloat32});
  return v;
}

ValueId node(Graph& g, const std::string& op, std::vector<ValueId> inputs) {
  const ValueId out = g.add_value(ValueKind::kTensor, "");
  g.value(out).tensors.push_back(TensorMeta{{8, 16}, DType::kFloat32});
  g.add_node(op, std::move(inputs), {out});
  return out;
}

// One stage per node range [0, cut] and [cut + 1, last].
Plan two_stages(const Graph& g, NodeId cut) {
  Plan p;
  p.mode = Mode::kTraining;
  p.global_batch = 8;
  p.groups = {DeviceGroup{{"cpu:0"}, {8}}, DeviceGroup{{"cpu:1"}, {8}}};
  p.stages = {Stage{0, cut, 0}, Stage{cut + 1, g.num_nodes() - 1, 1}};
  return p;
}

}  // namespace

TEST(StageRouting, ValuesGoFromTheirProducerToLaterReaders) {
  Graph g;
  const ValueId x = tensor_input(g, "x");
  const ValueId h = node(g, "aten::relu", {x});
  const ValueId y = node(g, "aten::add", {h, x});
  g.set_outputs({y});
  const StageRouting r = route_stages(g, two_stages(g, 0));
  EXPECT_EQ(r.sends[0][1], (std::vector<ValueId>{h}));  // x is every stage's own
  EXPECT_FALSE(r.mutated[1][h]);
}

// x[:, :8].mul_(0.5) in stage 0, then head(x) in stage 1: a trace leaves head reading x, so stage 1 must get
// stage 0's written x rather than its own copy of the batch; a write through a view in stage 1 of a value it
// receives marks the received root for copying.
TEST(StageRouting, AnInputWrittenThroughAViewGoesToLaterReaders) {
  Graph g;
  const ValueId x = tensor_input(g, "x");
  const ValueId view = node(g, "aten::slice", {x});
  node(g, "aten::mul_", {view});
  const ValueId h = node(g, "aten::linear", {x});
  const ValueId h_view = node(g, "aten::select", {h});
  node(g, "aten::add_", {h_view});
  g.set_outputs({h});
  const StageRouting r = route_stages(g, two_stages(g, 1));
  EXPECT_EQ(r.sends[0][1], (std::vector<ValueId>{x}));
  EXPECT_TRUE(r.mutated[0][x]);
  // Stage 1 receives h and writes it through a view it makes: the received h must be copied.
  const StageRouting later = route_stages(g, two_stages(g, 2));
  EXPECT_EQ(later.sends[0][1], (std::vector<ValueId>{h}));
  EXPECT_TRUE(later.mutated[1][h]);
  EXPECT_FALSE(later.split_storage_write);
  EXPECT_FALSE(r.split_storage_write);
  // The view made in stage 0 and written in stage 1: the write would land in stage 1's received copy.
  const StageRouting split = route_stages(g, two_stages(g, 0));
  EXPECT_EQ(split.sends[0][1], (std::vector<ValueId>{view}));
  ASSERT_TRUE(split.split_storage_write);
  EXPECT_EQ(split.split_storage_write->copies, (std::vector<ValueId>{x, view}));
  EXPECT_EQ(split.split_storage_write->writer_stage, 1);
  EXPECT_EQ(split.split_storage_write->write, 1);
}

// x.float().div_(255) with the conversion in stage 0 and the write in stage 1: `to` may return x itself, so
// the write counts as one into the input, but nothing after it reads x, so the cut is allowed.
TEST(StageRouting, AWriteDownstreamIntoAnInputNothingLaterReadsIsAllowed) {
  Graph g;
  const ValueId x = tensor_input(g, "x");
  const ValueId converted = node(g, "aten::to", {x});
  const ValueId scaled = node(g, "aten::div_", {converted});
  const ValueId y = node(g, "aten::linear", {scaled});
  g.set_outputs({y});
  const StageRouting r = route_stages(g, two_stages(g, 0));
  EXPECT_EQ(r.sends[0][1], (std::vector<ValueId>{converted}));
  EXPECT_TRUE(r.mutated[1][converted]);
  EXPECT_FALSE(r.split_storage_write);
}

// z = zeros(x); z[:, 16:] = b in stage 1 through a slice it makes of z; head(z) in stage 2: stage 2 must get
// z from stage 1, which wrote it, not from stage 0, which made it.
TEST(StageRouting, AValueWrittenByALaterStageComesFromThere) {
  Graph g;
  const ValueId x = tensor_input(g, "x");
  const ValueId z = node(g, "aten::new_zeros", {x});  // n0
  const ValueId right = node(g, "aten::slice", {z});  // n1
  node(g, "aten::copy_", {right, x});                 // n2
  const ValueId y = node(g, "aten::linear", {z});     // n3
  g.set_outputs({y});
  Plan p = two_stages(g, 0);
  p.groups.push_back(DeviceGroup{{"cpu:2"}, {8}});
  p.stages = {Stage{0, 0, 0}, Stage{1, 2, 1}, Stage{3, 3, 2}};
  const StageRouting r = route_stages(g, p);
  EXPECT_FALSE(r.split_storage_write);
  EXPECT_EQ(r.sends[0][1], (std::vector<ValueId>{z}));
  EXPECT_TRUE(r.sends[0][2].empty());
  EXPECT_EQ(r.sends[1][2], (std::vector<ValueId>{z}));
  EXPECT_TRUE(r.mutated[1][z]);
  // With the slice made in stage 0, stage 1 would hold the slice and z as two copies: refused.
  p.stages = {Stage{0, 1, 0}, Stage{2, 2, 1}, Stage{3, 3, 2}};
  const StageRouting split = route_stages(g, p);
  ASSERT_TRUE(split.split_storage_write);
  EXPECT_EQ(split.split_storage_write->copies, (std::vector<ValueId>{z, right}));
}

// The planner's cut filter (graph/analysis.h's storage_write_cuts) against the engine's check, as an oracle:
// on every graph of four nodes drawn from {view of the root, view of the last value, write into the last
// value, read the root, compute from the last value}, where the root is a user input or a fresh tensor made
// by node 0, a two-stage cut is refused by routing exactly where the filter forbids it.
TEST(StageRouting, ThePlannersCutFilterRefusesWhatTheEngineRefuses) {
  int graphs = 0, refused = 0;
  for (const bool fresh_root : {false, true}) {
    for (int code = 0; code < 5 * 5 * 5 * 5; ++code) {
      Graph g;
      const ValueId x = tensor_input(g, "x");
      const ValueId root = fresh_root ? node(g, "aten::new_zeros", {x}) : x;
      ValueId last = root;
      for (int i = 0, c = code; i < 4; ++i, c /= 5) {
        switch (c % 5) {
          case 0:
            last = node(g, "aten::slice", {root});
            break;
          case 1:
            last = node(g, "aten::slice", {last});
            break;
          case 2:
            last = node(g, "aten::mul_", {last});
            break;
          case 3:
            last = node(g, "aten::linear", {root});
            break;
          default:
            last = node(g, "aten::relu", {last});
            break;
        }
      }
      g.set_outputs({last});
      const std::vector<bool> allowed = storage_write_cuts(g);
      ++graphs;
      for (NodeId cut = 0; cut + 1 < g.num_nodes(); ++cut) {
        const bool engine_refuses = route_stages(g, two_stages(g, cut)).split_storage_write.has_value();
        refused += engine_refuses ? 1 : 0;
        EXPECT_EQ(engine_refuses, !allowed[static_cast<size_t>(cut)])
            << (fresh_root ? "fresh root" : "input root") << ", graph " << code << ", cut after node " << cut;
      }
    }
  }
  EXPECT_EQ(graphs, 2 * 625);
  EXPECT_GT(refused, 0) << "the enumeration never reaches a refused cut";
}

}  // namespace partita

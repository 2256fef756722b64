#include "partita/search/stage_model.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "test_support.h"

namespace partita {
namespace {

using namespace partita::testing;

TEST(StageModel, PrefixSumsMatchTheCostTable) {
  const Graph g = chain_graph({1e9, 2e9, 3e9}, {10, 20, 30}, {100, 200, 300}, 4);
  const Cluster c = make_cluster({make_spec("a", 1), make_spec("b", 2)}, make_link(10));
  const CostTable t = table_for(g, c);
  const StageModel m(g, c, t, SearchOptions{});
  EXPECT_EQ(m.graph_batch(), 4);
  const int spec = m.spec_of(1);
  EXPECT_NEAR(m.forward(spec, 1, 2, 4).value(), (t.times[spec][1].forward + t.times[spec][2].forward).value(),
              1e-15);
  EXPECT_NEAR(m.backward(spec, 0, 0, 2).value(), t.times[spec][0].backward.value() / 2, 1e-15);
  EXPECT_EQ(m.parameter_bytes(0, 2), Bytes(4 * 600));
  EXPECT_EQ(m.trainable_bytes(1, 1), Bytes(4 * 200));
  EXPECT_DOUBLE_EQ(m.boundary_bytes_per_sample(0), 40);  // y0: 10 floats per sample
  EXPECT_DOUBLE_EQ(m.boundary_bytes_per_sample(2), 0);
  EXPECT_EQ(m.boundary_bytes(1, 3), Bytes(3 * 80));
}

// Two nodes of 1000 trainable floats each (8000 bytes of weights) on one device; Adam.
struct TwoNodes {
  Graph g = chain_graph({1e9, 1e9}, {1000, 1000}, {1000, 1000});
  Cluster c = make_cluster({make_spec("a", 1, 1)}, make_link(10));
  CostTable t = table_for(g, c);
  SearchOptions o = adam();
  static SearchOptions adam() {
    SearchOptions o;
    o.optimizer = Optimizer::kAdam;
    return o;
  }
};

TEST(StageModel, MemoryFollowsTheSavingsChosen) {
  const TwoNodes x;
  const StageModel m(x.g, x.c, x.t, x.o);
  const Bytes plain = m.memory(StageLoad{0, 1, 4, 3, Checkpointing::kNone, Offload::kNone});
  const Bytes ckpt = m.memory(StageLoad{0, 1, 4, 3, Checkpointing::kFull, Offload::kNone});
  const Bytes off = m.memory(StageLoad{0, 1, 4, 3, Checkpointing::kNone, Offload::kOptimizerState});
  EXPECT_LT(ckpt, plain);
  EXPECT_EQ((plain - off).value(), 2 * 8000);  // Adam: two moments of 8000 bytes of weights
  EXPECT_GT(m.offload_time(StageLoad{0, 1, 4, 3, Checkpointing::kNone, Offload::kOptimizerState}).value(), 0);
  EXPECT_EQ(m.memory_cap(0), Bytes(1 << 30));
}

TEST(StageModel, ModelStateIsWeightsGradientsAndOptimizerState) {
  TwoNodes x;
  const StageModel train(x.g, x.c, x.t, x.o);
  const StageLoad load{0, 1, 4, 3, Checkpointing::kNone, Offload::kNone};
  EXPECT_EQ(train.model_state(load), Bytes(8000 + 8000 + 2 * 8000));  // weights, gradients, two moments
  EXPECT_EQ(train.model_state(StageLoad{0, 1, 4, 3, Checkpointing::kNone, Offload::kOptimizerState}),
            Bytes(16000));
  // The rest of memory() grows with the samples and microbatches in flight; the state does not.
  EXPECT_GT(train.memory(load), train.model_state(load));
  EXPECT_EQ(train.model_state(StageLoad{0, 1, 8, 6, Checkpointing::kNone, Offload::kNone}),
            train.model_state(load));
  x.o.mode = Mode::kInference;
  const StageModel infer(x.g, x.c, x.t, x.o);
  EXPECT_EQ(infer.model_state(load), Bytes(8000));
}

TEST(StageModel, RefusesATableWithoutTheClustersSpec) {
  const Graph g = chain_graph({1e9}, {10}, {10});
  const Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  const CostTable t = roofline_cost_table(g, {make_spec("other", 1)});
  EXPECT_THROW(StageModel(g, c, t, SearchOptions{}), Error);
}

}  // namespace
}  // namespace partita

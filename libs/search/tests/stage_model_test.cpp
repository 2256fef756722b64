#include "partita/search/stage_model.h"

#include <gtest/gtest.h>

#include <algorithm>

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

TEST(StageModel, ActivationOffloadKeepsStageInputsAndPaysTwoCopiesPerMicrobatch) {
  TwoNodes x;
  x.o.host_bandwidth = BytesPerSecond(10e9);
  const StageModel m(x.g, x.c, x.t, x.o);
  const StageLoad plain{0, 1, 4, 3, Checkpointing::kNone, Offload::kNone};
  const StageLoad act{0, 1, 4, 3, Checkpointing::kNone, Offload::kActivations};
  const StageLoad both{0, 1, 4, 3, Checkpointing::kNone, Offload::kActivationsAndOptimizerState};
  // Saved per sample: the 16-float input and two 1000-float outputs; a microbatch is 4 samples.
  const double saved = 4.0 * (4 * 16 + 4 * 1000 + 4 * 1000), input = 4.0 * 4 * 16;
  EXPECT_GT(m.memory(act).value(), 0);
  EXPECT_LT(m.memory(act), m.memory(plain));
  // Three microbatches in flight keep their inputs; one microbatch's activations are on the device at once.
  EXPECT_NEAR(static_cast<double>((m.memory(plain) - m.memory(act)).value()), 3 * saved - (3 * input + saved),
              1.0);
  EXPECT_EQ((m.memory(act) - m.memory(both)).value(), 2 * 8000);  // Adam's two moments go to the host too
  EXPECT_NEAR(m.activation_transfer(act).value(), saved / 10e9, 1e-18);
  EXPECT_NEAR((m.microbatch_time(0, act) - m.microbatch_time(0, plain)).value(), 2 * saved / 10e9, 1e-15);
  EXPECT_NEAR((m.microbatch_time(0, both) - m.microbatch_time(0, plain)).value(), 2 * saved / 10e9, 1e-15);
  EXPECT_EQ(m.activation_transfer(plain).value(), 0);
  // The optimizer-state round trip is per step, not per microbatch, and is unchanged by activation offload.
  EXPECT_EQ(m.offload_time(act).value(), 0);
  EXPECT_EQ(m.offload_time(both),
            m.offload_time(StageLoad{0, 1, 4, 3, Checkpointing::kNone, Offload::kOptimizerState}));
  x.o.mode = Mode::kInference;
  const StageModel infer(x.g, x.c, x.t, x.o);
  EXPECT_EQ(infer.activation_transfer(act).value(), 0);
  EXPECT_EQ(infer.memory(act), infer.memory(plain));
}

bool has(const std::vector<Savings>& choices, Checkpointing c, Offload o) {
  return std::any_of(choices.begin(), choices.end(),
                     [&](const Savings& s) { return s.checkpointing == c && s.offload == o; });
}

TEST(StageModel, SavingsChoicesNeverOffloadFromACpuNorCombineCheckpointingWithActivationOffload) {
  const Graph g = chain_graph({1e9}, {10}, {10});
  DeviceSpec cpu = make_spec("cpu", 1);
  cpu.kind = DeviceKind::kCpu;
  cpu.cores = 1;
  const Cluster c = make_cluster({make_spec("gpu", 1), cpu}, make_link(10));
  const CostTable t = table_for(g, c);
  const StageModel m(g, c, t, SearchOptions{});
  EXPECT_TRUE(m.can_offload(0));
  EXPECT_FALSE(m.can_offload(1));
  const auto gpu = m.savings_choices({0});
  ASSERT_EQ(gpu.size(), 6u);
  EXPECT_EQ(gpu.front().checkpointing, Checkpointing::kNone);
  EXPECT_EQ(gpu.front().offload, Offload::kNone);
  for (Offload o : {Offload::kNone, Offload::kOptimizerState, Offload::kActivations,
                    Offload::kActivationsAndOptimizerState})
    EXPECT_TRUE(has(gpu, Checkpointing::kNone, o)) << offload_name(o);
  EXPECT_TRUE(has(gpu, Checkpointing::kFull, Offload::kOptimizerState));
  EXPECT_FALSE(has(gpu, Checkpointing::kFull, Offload::kActivations));
  EXPECT_FALSE(has(gpu, Checkpointing::kFull, Offload::kActivationsAndOptimizerState));
  for (const auto& devices : {std::vector<int>{1}, std::vector<int>{0, 1}}) {
    const auto choices = m.savings_choices(devices);
    ASSERT_EQ(choices.size(), 2u);
    for (const Savings& s : choices) EXPECT_EQ(s.offload, Offload::kNone);
  }
  SearchOptions inference;
  inference.mode = Mode::kInference;
  const StageModel infer(g, c, t, inference);
  ASSERT_EQ(infer.savings_choices({0}).size(), 1u);
}

TEST(StageModel, RefusesATableWithoutTheClustersSpec) {
  const Graph g = chain_graph({1e9}, {10}, {10});
  const Cluster c = make_cluster({make_spec("a", 1)}, make_link(10));
  const CostTable t = roofline_cost_table(g, {make_spec("other", 1)});
  EXPECT_THROW(StageModel(g, c, t, SearchOptions{}), Error);
}

}  // namespace
}  // namespace partita

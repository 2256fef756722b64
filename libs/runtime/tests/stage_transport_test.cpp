#include "partita/runtime/stage_transport.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <set>
#include <thread>

#include <unistd.h>

#include <torch/script.h>

#include "branch_layouts.h"
#include "hybrid_layouts.h"
#include "loopback_ranks.h"
#include "partita/core/error.h"
#include "partita/graph/analysis.h"
#include "partita/runtime/distributed_launch.h"
#include "partita/runtime/distributed_reducer.h"
#include "partita/runtime/engine.h"
#include "partita/runtime/stage_routing.h"
#include "partita/search/graph_identity.h"
#include "partita/torch_bridge/model.h"

namespace partita {

namespace {

using testing::env_for;
using testing::run_ranks;

LoadedModel load(const std::string& path, const std::string& input) {
  LoadedModel m = load_model(path);
  annotate_shapes(m, {parse_input_spec(input)});
  return m;
}

// A 2-stage pipeline cut after node `cut` (default: the graph's best cut point).
Plan pipeline_plan(const Graph& g, Mode mode, Schedule schedule, int cut = -1) {
  Plan p;
  p.graph = graph_identity(g);
  p.mode = mode;
  p.optimizer = Optimizer::kAdam;
  p.strategy = StrategyKind::kPipeline;
  p.schedule = schedule;
  p.global_batch = 8;
  p.microbatches = 4;
  if (cut < 0) cut = best_cut_points(g, 1)[0].after_node;
  p.groups = {DeviceGroup{{"cpu:0"}, {2}}, DeviceGroup{{"cpu:1"}, {2}}};
  p.stages = {Stage{0, cut, 0}, Stage{cut + 1, g.num_nodes() - 1, 1}};
  return p;
}

StepInputs batch_for(const Engine& engine, const std::string& input) {
  StepInputs b;
  b.inputs = make_inputs({parse_input_spec(input)}, 5);
  if (engine.plan().mode == Mode::kTraining) b.targets = engine.make_targets(b.inputs, 6);
  return b;
}

struct Trained {
  std::vector<double> losses;
  std::vector<torch::Tensor> parameters;  // after training
  std::vector<torch::Tensor> outputs;     // inference
};

// The in-process engine: both stages in this process.
Trained run_in_process(const std::string& path, const std::string& input,
                       const std::function<Plan(const Graph&)>& plan, int steps) {
  LoadedModel m = load(path, input);
  Engine engine(m, plan(m.ir));
  const StepInputs b = batch_for(engine, input);
  Trained out;
  for (int s = 0; s < steps; ++s) {
    StepResult r = engine.step(b);
    out.losses.push_back(r.loss);
    out.outputs = r.outputs;
  }
  for (const auto& p : engine.parameters()) out.parameters.push_back(p.detach().clone());
  return out;
}

// The stage rank `rank` runs when stage k runs on rank stage_ranks[k] (empty: stage r on rank r).
int stage_of_rank(const std::vector<int>& stage_ranks, int rank) {
  if (stage_ranks.empty()) return rank;
  return static_cast<int>(std::find(stage_ranks.begin(), stage_ranks.end(), rank) - stage_ranks.begin());
}

// One engine per stage in threads of their own, joined by Gloo (as processes are; `world`: the plan's
// stages); out[r] is rank r's.
std::vector<Trained> run_stage_ranks(const std::string& path, const std::string& input,
                                     const std::function<Plan(const Graph&)>& plan, int steps,
                                     const std::vector<int>& stage_ranks = {}, int world = 2) {
  std::vector<Trained> out(static_cast<size_t>(world));
  run_ranks(world, [&](int rank, int port) {
    LoadedModel m = load(path, input);
    DistributedGroup group(env_for(rank, world, port));
    DistributedGradientReducer reducer(group);
    DistributedStageTransport transport(group, stage_ranks);
    EngineOptions o;
    o.local_stage = stage_of_rank(stage_ranks, rank);
    o.transport = &transport;
    o.reducer = &reducer;
    {
      Engine engine(m, plan(m.ir), o);
      const StepInputs b = batch_for(engine, input);
      for (int s = 0; s < steps; ++s) {
        StepResult r = engine.step(b);
        out[rank].losses.push_back(r.loss);
        out[rank].outputs = r.outputs;
      }
      for (const auto& p : engine.parameters()) out[rank].parameters.push_back(p.detach().clone());
    }
    group.barrier("the end of the test");
  });
  return out;
}

// The parameters stage `stage` uses (the others are not trained in that stage's process).
std::vector<bool> used_by_stage(const Graph& g, const Plan& plan, int stage) {
  const std::vector<std::vector<int>> readers = plan.parameter_stages(g);
  std::vector<bool> used;
  for (size_t i = 0; i < g.parameters().size(); ++i) {
    if (!g.parameters()[i].requires_grad) continue;
    used.push_back(std::find(readers[i].begin(), readers[i].end(), stage) != readers[i].end());
  }
  return used;
}

void expect_same_training(const std::string& path, const std::string& input,
                          const std::function<Plan(const Graph&)>& plan,
                          const std::vector<int>& stage_ranks = {}, int world = 2) {
  const auto one = run_in_process(path, input, plan, 4);
  const auto many = run_stage_ranks(path, input, plan, 4, stage_ranks, world);
  ASSERT_EQ(one.losses.size(), many[0].losses.size());
  for (size_t s = 0; s < one.losses.size(); ++s) {
    EXPECT_NEAR(many[0].losses[s], one.losses[s], 1e-6 * std::abs(one.losses[s])) << "rank 0, step " << s;
    for (int rank = 1; rank < world; ++rank)
      EXPECT_EQ(many[0].losses[s], many[rank].losses[s]) << "every rank knows the global loss, step " << s;
  }
  EXPECT_LT(one.losses.back(), one.losses.front());
  // Each rank trained exactly the parameters of its stage, like the in-process engine.
  const LoadedModel m = load(path, input);
  const Plan p = plan(m.ir);
  const auto& two = many;
  for (int rank = 0; rank < world; ++rank) {
    const auto used = used_by_stage(m.ir, p, stage_of_rank(stage_ranks, rank));
    ASSERT_EQ(used.size(), one.parameters.size());
    for (size_t i = 0; i < used.size(); ++i) {
      if (!used[i]) continue;
      EXPECT_TRUE(torch::allclose(two[rank].parameters[i], one.parameters[i], 1e-5, 1e-6))
          << "rank " << rank << ", parameter " << m.ir.parameters()[i].name;
    }
  }
}

std::string mlp() { return std::string(PARTITA_MODELS_DIR) + "/mlp.pt"; }

}  // namespace

TEST(StageMessage, RoundTripsTensorsNumbersAndAbsentGradients) {
  const std::vector<c10::IValue> values{torch::randn({2, 3}),
                                        c10::IValue(),
                                        torch::Tensor(),
                                        torch::arange(6, torch::kInt64).view({2, 3}).t(),  // not contiguous
                                        int64_t{-7},
                                        2.5,
                                        true,
                                        torch::ones({0, 4}, torch::kBFloat16),
                                        torch::tensor(3.0)};
  const EncodedValues msg = encode_stage_message(values);
  EXPECT_EQ(msg.header.numel(), stage_message_header_length(values.size()));
  EXPECT_EQ(msg.payload.numel(), 2 * 3 * 4 + 6 * 8 + 4);
  const auto back = decode_stage_message(msg.header, msg.payload);
  ASSERT_EQ(back.size(), values.size());
  EXPECT_TRUE(back[0].toTensor().equal(values[0].toTensor()));
  EXPECT_TRUE(back[1].isNone());
  EXPECT_TRUE(back[2].isNone());
  EXPECT_TRUE(back[3].toTensor().equal(values[3].toTensor()));
  EXPECT_EQ(back[4].toInt(), -7);
  EXPECT_EQ(back[5].toDouble(), 2.5);
  EXPECT_TRUE(back[6].toBool());
  EXPECT_EQ(back[7].toTensor().sizes(), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(back[7].toTensor().scalar_type(), torch::kBFloat16);
  EXPECT_EQ(back[8].toTensor().dim(), 0);
  EXPECT_EQ(back[8].toTensor().item<float>(), 3.0f);
}

// Lists and tuples travel pickled, with their element types (an op reading an int[] needs one).
TEST(StageMessage, RoundTripsListsAndTuplesWithTheirTypes) {
  c10::List<at::Tensor> tensors({torch::randn({2, 2}), torch::arange(3)});
  const std::vector<c10::IValue> values{c10::IValue(std::vector<int64_t>{4, -1}), torch::ones({2}), tensors,
                                        c10::ivalue::Tuple::create({c10::IValue(int64_t{3}), 1.5}),
                                        c10::IValue(std::vector<double>{})};
  const EncodedValues msg = encode_stage_message(values);
  const auto back = decode_stage_message(msg.header, msg.payload);
  ASSERT_EQ(back.size(), values.size());
  ASSERT_TRUE(back[0].isIntList());
  EXPECT_EQ(back[0].toIntVector(), (std::vector<int64_t>{4, -1}));
  EXPECT_TRUE(back[1].toTensor().equal(torch::ones({2})));
  ASSERT_TRUE(back[2].isTensorList());
  EXPECT_TRUE(back[2].toTensorVector()[0].equal(tensors.get(0)));
  EXPECT_TRUE(back[2].toTensorVector()[1].equal(tensors.get(1)));
  ASSERT_TRUE(back[3].isTuple());
  EXPECT_EQ(back[3].toTupleRef().elements()[0].toInt(), 3);
  EXPECT_EQ(back[3].toTupleRef().elements()[1].toDouble(), 1.5);
  ASSERT_TRUE(back[4].isDoubleList());
  EXPECT_TRUE(back[4].toDoubleVector().empty());
}

// A list's gradient is undefined where an element got none (a pipeline sends it back so): the undefined
// entries come back undefined, in place, the list still a tensor list; a tuple's too.
TEST(StageMessage, RoundTripsUndefinedTensorsInsideListsAndTuples) {
  c10::List<at::Tensor> grads({torch::ones({2}), at::Tensor(), torch::full({1}, 2.0)});
  const std::vector<c10::IValue> values{
      grads, c10::ivalue::Tuple::create({c10::IValue(at::Tensor()), torch::ones({1})}),
      c10::List<at::Tensor>({at::Tensor()})};
  const EncodedValues msg = encode_stage_message(values);
  const auto back = decode_stage_message(msg.header, msg.payload);
  ASSERT_EQ(back.size(), values.size());
  ASSERT_TRUE(back[0].isTensorList());
  const auto list = back[0].toTensorVector();
  ASSERT_EQ(list.size(), 3u);
  EXPECT_TRUE(list[0].equal(torch::ones({2})));
  EXPECT_FALSE(list[1].defined());
  EXPECT_TRUE(list[2].equal(torch::full({1}, 2.0)));
  const auto& tuple = back[1].toTupleRef().elements();
  ASSERT_EQ(tuple.size(), 2u);
  EXPECT_TRUE(tuple[0].isTensor() && !tuple[0].toTensor().defined());
  EXPECT_TRUE(tuple[1].toTensor().equal(torch::ones({1})));
  ASSERT_TRUE(back[2].isTensorList());
  EXPECT_FALSE(back[2].toTensorVector().at(0).defined());
}

TEST(StageMessage, RefusesObjectsAndTagsAreDistinct) {
  EXPECT_THROW(encode_stage_message({c10::IValue(c10::Dict<std::string, int64_t>())}), Error);
  std::set<int> tags;
  for (int from = 0; from < 3; ++from) {
    for (int to = 0; to < 3; ++to) {
      for (int m = 0; m < 5; ++m) {
        for (int dir = 0; dir < 2; ++dir) {
          for (int part = 0; part < 2; ++part) tags.insert(stage_message_tag({from, to, m, dir == 1}, part));
        }
      }
    }
  }
  EXPECT_EQ(tags.size(), 3u * 3 * 5 * 2 * 2);
  // Branch transfers (one message per value handed over) never share a pipeline message's tag.
  for (int transfer = 0; transfer < 7; ++transfer) {
    for (int m = 0; m < 5; ++m) {
      for (int dir = 0; dir < 2; ++dir) {
        for (int part = 0; part < 2; ++part)
          tags.insert(stage_message_tag({0, 1, m, dir == 1, transfer}, part));
      }
    }
  }
  EXPECT_EQ(tags.size(), 3u * 3 * 5 * 2 * 2 + 7u * 5 * 2 * 2);
  EXPECT_GE(*tags.begin(), 0);
  EXPECT_GE(stage_message_tag({255, 255, 4095, true, 65535}, 1), 0);  // no overflow at the limits
  EXPECT_THROW(stage_message_tag({0, 300, 0, false}, 0), Error);
  EXPECT_THROW(stage_message_tag({0, 1, 0, false, 65536}, 0), Error);
}

TEST(StageTransport, TwoRankPipelineTrainsLikeTheInProcessPipeline) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  for (Schedule schedule : {Schedule::kOneFOneB, Schedule::kGPipe}) {
    SCOPED_TRACE(schedule == Schedule::kGPipe ? "gpipe" : "1f1b");
    expect_same_training(mlp(), "8x64",
                         [&](const Graph& g) { return pipeline_plan(g, Mode::kTraining, schedule); });
  }
}

// A cut right after gpt's first aten::split: its output, a list of tensors, crosses to the other process
// pickled, and its gradient comes back as a list with undefined entries where an element got none. The
// math is the in-process pipeline's (before, such a cut was refused across processes).
TEST(StageTransport, TwoRankPipelineWithAListCrossingTheCutTrainsLikeOneProcess) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const std::string gpt = std::string(PARTITA_MODELS_DIR) + "/gpt.pt";
  for (Schedule schedule : {Schedule::kOneFOneB, Schedule::kGPipe}) {
    SCOPED_TRACE(schedule == Schedule::kGPipe ? "gpipe" : "1f1b");
    expect_same_training(gpt, "8x32:i64:2048", [&](const Graph& g) {
      NodeId split = kNoNode;
      for (const Node& n : g.nodes()) {
        if (n.op == "aten::split" && split == kNoNode) split = n.id;
      }
      EXPECT_NE(split, kNoNode);
      Plan p = pipeline_plan(g, Mode::kTraining, schedule, split);
      bool list_crosses = false;
      const StageRouting routing = route_stages(g, p);
      for (ValueId v : routing.sends[0][1]) list_crosses |= g.value(v).kind == ValueKind::kList;
      EXPECT_TRUE(list_crosses);
      return p;
    });
  }
}

// A rebalanced pipeline whose stages swapped devices runs each stage in the process that holds its device:
// stage 0 (on cpu:1) on rank 1, stage 1 (on cpu:0) on rank 0. The math is the same.
TEST(StageTransport, AStageRunsOnTheRankTheTransportRoutesItTo) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const auto swapped = [](const Graph& g) {
    Plan p = pipeline_plan(g, Mode::kTraining, Schedule::kOneFOneB);
    std::swap(p.groups[0], p.groups[1]);
    return p;
  };
  const std::vector<int> ranks = {1, 0};
  {
    const LoadedModel m = load(mlp(), "8x64");
    EXPECT_EQ(stage_ranks_by_device(swapped(m.ir), {{"cpu:0"}, {"cpu:1"}}), ranks);
  }
  expect_same_training(mlp(), "8x64", swapped, ranks);
}

TEST(StageTransport, RoutesByAPermutationOfTheRanks) {
  std::vector<std::vector<int>> routed(2);  // per rank: rank_of(0), rank_of(1), stage_run_by(own rank)
  run_ranks(2, [&](int rank, int port) {
    DistributedGroup group(env_for(rank, 2, port));
    DistributedStageTransport transport(group);
    EXPECT_EQ(transport.rank_of(1), 1) << "stage s on rank s by default";
    EXPECT_THROW(transport.set_stage_ranks({0}), Error) << "a rank for every stage";
    EXPECT_THROW(transport.set_stage_ranks({1, 1}), Error) << "one stage per rank";
    EXPECT_THROW(transport.set_stage_ranks({0, 2}), Error) << "no rank 2 in a group of 2";
    transport.set_stage_ranks({1, 0});
    routed[static_cast<size_t>(rank)] = {transport.rank_of(0), transport.rank_of(1),
                                         transport.stage_run_by(rank)};
    group.barrier("the end of the test");
  });
  EXPECT_EQ(routed[0], (std::vector<int>{1, 0, 1}));
  EXPECT_EQ(routed[1], (std::vector<int>{1, 0, 0}));
}

TEST(StageTransport, StagesGoToTheRanksHoldingTheirDevices) {
  const LoadedModel m = load(mlp(), "8x64");
  Plan p = pipeline_plan(m.ir, Mode::kTraining, Schedule::kOneFOneB);
  EXPECT_EQ(stage_ranks_by_device(p, {{"cpu:0"}, {"cpu:1"}}), (std::vector<int>{0, 1}));
  EXPECT_EQ(stage_ranks_by_device(p, {{"cpu:1"}, {"cpu:0"}}), (std::vector<int>{1, 0}));
  p.groups[1].devices = {"cpu:2"};  // no process holds cpu:2
  EXPECT_THROW(
      {
        try {
          stage_ranks_by_device(p, {{"cpu:0"}, {"cpu:1"}});
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("stage 1 of the plan runs on cpu:2"), std::string::npos)
              << e.what();
          throw;
        }
      },
      Error);
  p.groups[1].devices = {"cpu:0"};  // both stages on rank 0's device
  EXPECT_THROW(stage_ranks_by_device(p, {{"cpu:0"}, {"cpu:1"}}), Error);
  p.groups[1].devices = {"cpu:1"};  // three processes for two stages
  EXPECT_THROW(stage_ranks_by_device(p, {{"cpu:0"}, {"cpu:1"}, {"cpu:2"}}), Error);
}

TEST(StageTransport, TwoRankPipelineInferenceReturnsTheOutputsOnTheLastStage) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  auto plan = [](const Graph& g) { return pipeline_plan(g, Mode::kInference, Schedule::kOneFOneB); };
  const auto one = run_in_process(mlp(), "8x64", plan, 1);
  const auto two = run_stage_ranks(mlp(), "8x64", plan, 2);
  EXPECT_TRUE(two[0].outputs.empty());
  ASSERT_EQ(two[1].outputs.size(), one.outputs.size());
  for (size_t i = 0; i < one.outputs.size(); ++i) EXPECT_TRUE(two[1].outputs[i].equal(one.outputs[i]));
}

namespace {

// A two-layer model whose layers share w (tied); b only the first reads. Saved to a temporary file.
std::string save_tied_model() {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("partita_tied_" + std::to_string(getpid()) + ".pt"))
          .string();
  torch::manual_seed(0);
  torch::jit::Module tied("Tied");
  tied.register_parameter("w", (torch::randn({64, 64}) * 0.1).requires_grad_(), /*is_buffer=*/false);
  tied.register_parameter("b", torch::zeros({64}).requires_grad_(), /*is_buffer=*/false);
  tied.define(R"(
      def forward(self, x):
          h = torch.relu(torch.matmul(x, self.w.t()) + self.b)
          return torch.matmul(h, self.w.t())
    )");
  tied.save(path);
  return path;
}

// The tied model's cut: after its relu (w read on both sides).
int tied_cut(const Graph& g) {
  int cut = -1;
  for (const Node& n : g.nodes()) {
    if (n.op.rfind("aten::relu", 0) == 0) cut = n.id;
  }
  return cut;
}

}  // namespace

// A weight that both stages use (tied): each process has half of its gradient; the reducer sums them and both
// processes take the same step. With SGD: Adam divides each gradient by its own magnitude, so where an
// element of w's gradient is near zero, the order in which the two halves are added (which differs between
// the processes' sum and the in-process stages' accumulation, itself timing-dependent) decided the step's
// sign there, beyond the tolerance (it failed once in a loaded CI run, with w drawn unseeded).
TEST(StageTransport, AWeightUsedByBothStagesGetsTheSummedGradient) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const std::string path = save_tied_model();
  LoadedModel m = load(path, "8x64");
  const int cut = tied_cut(m.ir);
  ASSERT_GE(cut, 0);
  auto plan = [&](const Graph& g) {
    Plan p = pipeline_plan(g, Mode::kTraining, Schedule::kOneFOneB, cut);
    p.optimizer = Optimizer::kSgd;
    return p;
  };
  const Plan p = plan(m.ir);
  ASSERT_EQ(used_by_stage(m.ir, p, 0).size(), 2u);
  ASSERT_TRUE(used_by_stage(m.ir, p, 0)[0] && used_by_stage(m.ir, p, 1)[0])
      << "w must be used by both stages";
  expect_same_training(path, "8x64", plan);
  std::filesystem::remove(path);
}

// Between steps a stage's process keeps only the gradients that live in the reducer's buckets (the weight
// both stages read), zeroed; the others are set to none, as in one process, so they are not held through the
// next forward (the memory model counts them from the first backward that makes them).
TEST(StageTransport, AStageRankHoldsOnlyTheReducersGradientsThroughTheNextForward) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const std::string path = save_tied_model();
  struct AtForward : RuntimeObserver {
    const Engine* engine = nullptr;
    // Per trainable parameter, at the second step's forward: "none", "zeros" or "other".
    std::vector<std::string> seen;
    void on_task_begin(const TaskEvent& e) override {
      if (e.kind != EngineTaskKind::kForward || e.step != 1 || !seen.empty()) return;
      for (const torch::Tensor& p : engine->parameters()) {
        seen.push_back(!p.grad().defined()                             ? "none"
                       : p.grad().count_nonzero().item<int64_t>() == 0 ? "zeros"
                                                                       : "other");
      }
    }
  };
  std::vector<std::vector<std::string>> seen(2);
  run_ranks(2, [&](int rank, int port) {
    LoadedModel m = load(path, "8x64");
    DistributedGroup group(env_for(rank, 2, port));
    DistributedGradientReducer reducer(group);
    DistributedStageTransport transport(group);
    EngineOptions o;
    o.local_stage = rank;
    o.transport = &transport;
    o.reducer = &reducer;
    {
      Engine engine(m, pipeline_plan(m.ir, Mode::kTraining, Schedule::kOneFOneB, tied_cut(m.ir)), o);
      AtForward observer;
      observer.engine = &engine;
      engine.add_observer(&observer);
      const StepInputs b = batch_for(engine, "8x64");
      for (int s = 0; s < 2; ++s) engine.step(b);
      seen[static_cast<size_t>(rank)] = observer.seen;
    }
    group.barrier("the end of the test");
  });
  std::filesystem::remove(path);
  // Parameters in the model's order: w (both stages), b (stage 0 only).
  EXPECT_EQ(seen[0], (std::vector<std::string>{"zeros", "none"}));
  EXPECT_EQ(seen[1], (std::vector<std::string>{"zeros", "none"}));
}

namespace {

std::string zoo(const std::string& name) { return std::string(PARTITA_MODELS_DIR) + "/" + name + ".pt"; }

}  // namespace

// A hybrid plan across two processes (one per stage, a stage's devices inside its process) trains exactly as
// the same plan in one process: the stage's first device exchanges whole microbatches with the other process
// and hands its devices their rows.
TEST(StageTransport, TwoRankHybridTrainsLikeTheInProcessHybrid) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  for (const auto& [name, input] : std::vector<std::pair<std::string, std::string>>{
           {"mlp", "8x64"}, {"cnn", "8x3x32x32"}, {"gpt", "8x16:i64:2048"}}) {
    LoadedModel probe = load(zoo(name), input);
    const NodeId cut = testing::splittable_cut(probe.ir);
    ASSERT_NE(cut, kNoNode) << name;
    for (const auto& layout : testing::kHybridLayouts) {
      SCOPED_TRACE(name + ", " + layout.name);
      expect_same_training(zoo(name), input, [&](const Graph& g) {
        return testing::hybrid_plan(g, Mode::kTraining, 8, 2, cut, layout.first, layout.second);
      });
    }
  }
}

TEST(StageTransport, TwoRankHybridInferenceGivesTheModulesOutputs) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  LoadedModel probe = load(mlp(), "8x64");
  const NodeId cut = testing::splittable_cut(probe.ir);
  for (const auto& layout : testing::kHybridLayouts) {
    SCOPED_TRACE(layout.name);
    auto plan = [&](const Graph& g) {
      return testing::hybrid_plan(g, Mode::kInference, 8, 2, cut, layout.first, layout.second);
    };
    const auto one = run_in_process(mlp(), "8x64", plan, 1);
    const auto two = run_stage_ranks(mlp(), "8x64", plan, 2);
    EXPECT_TRUE(two[0].outputs.empty());
    ASSERT_EQ(two[1].outputs.size(), one.outputs.size());
    for (size_t i = 0; i < one.outputs.size(); ++i) {
      EXPECT_TRUE(torch::allclose(two[1].outputs[i], one.outputs[i], 1e-6, 1e-7)) << "output " << i;
    }
  }
}

// Pipelines of tensor groups across processes (one process per stage, a stage's tensor group inside its
// process, Megatron's tensor-inside / pipeline-across layout): the same training as the same plan in one
// process. The stage's first device exchanges the tensor runner's board entries with the other process:
// whole values between tensor groups, rows between stages whose replicas hold different samples, every
// replica's gradient back. Checkpointed stages recompute their collectives; GPipe and 1F1B.
TEST(StageTransport, TwoRankPipelineOfTensorGroupsTrainsLikeOneProcess) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  struct Layout {
    std::string what, model, input;
    int microbatches;
    std::vector<std::vector<std::string>> devices;
    std::vector<std::vector<int>> data_shares;  // per stage, non-empty: replicas with these shares
    Schedule schedule = Schedule::kOneFOneB;
    bool checkpointed = false;
  };
  const std::vector<std::string> two = {"cpu:0", "cpu:1"}, other_two = {"cpu:0-1", "cpu"};
  const std::vector<Layout> layouts = {
      {"gpt, 2-way then 2-way", "gpt", "4x32:i64:2048", 2, {two, other_two}, {}},
      {"gpt, 2-way then 2-way, GPipe, checkpointed",
       "gpt",
       "4x32:i64:2048",
       2,
       {two, other_two},
       {},
       Schedule::kGPipe,
       true},
      {"gpt, one device then 2-way", "gpt", "4x32:i64:2048", 1, {{"cpu"}, two}, {}},
      {"gpt, 2-way then two replicas (1 and 3)", "gpt", "4x32:i64:2048", 1, {two, other_two}, {{}, {1, 3}}},
      {"mlp, two replicas (1 and 3) then 2-way", "mlp", "8x64", 2, {two, other_two}, {{1, 3}, {}}},
      {"mlp, replicas of 2-way groups (1 and 3) then 2-way",
       "mlp",
       "8x64",
       2,
       {{"cpu:0", "cpu:1", "cpu:0-1", "cpu"}, {"cpu:0-0", "cpu:1-1"}},
       {{1, 1, 3, 3}, {}}},
  };
  for (const Layout& l : layouts) {
    SCOPED_TRACE(l.what);
    const int batch = static_cast<int>(parse_input_spec(l.input).shape[0]);
    const auto plan = [&](const Graph& g) {
      // The MLP is cut after fc2 (between its pairs), the GPT between blocks.
      NodeId cut = best_cut_points(g, 1)[0].after_node;
      for (const Node& n : g.nodes()) {
        if (l.model == "mlp" && n.scope == "fc2") cut = n.id;
      }
      Plan p = testing::tensor_pipeline_plan(g, Mode::kTraining, batch, l.microbatches, cut, l.devices);
      p.schedule = l.schedule;
      for (size_t k = 0; k < l.data_shares.size(); ++k) {
        if (l.data_shares[k].empty()) continue;
        p.groups[k].batch_shares = l.data_shares[k];
        if (p.groups[k].devices.size() == 4) {
          p.groups[k].tensor_size = 2;
        } else {
          p.groups[k].parallelism = GroupParallelism::kData;
        }
      }
      if (l.checkpointed) p.stages[0].checkpointing = p.stages[1].checkpointing = Checkpointing::kFull;
      return p;
    };
    expect_same_training(zoo(l.model), l.input, plan);
  }
}

// Three processes: a middle stage receives from one process and sends to another in both directions. The
// GPT cut in three: a 2-way tensor group, two data-parallel replicas (shares 1 and 3: rows cross both of
// its cuts), a 2-way tensor group. Same losses as the plan in one process; every rank knows them; each rank
// trained its stage's parameters as one process did.
TEST(StageTransport, ThreeRankPipelineOfTensorGroupsTrainsLikeOneProcess) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const std::string input = "8x16:i64:2048";
  const auto plan = [](const Graph& g) {
    const auto cuts = best_cut_points(g, 2);
    std::vector<NodeId> after = {cuts.at(0).after_node, cuts.at(1).after_node};
    std::sort(after.begin(), after.end());
    Plan p = testing::tensor_pipeline_plan(g, Mode::kTraining, 8, 2, after[0],
                                           {{"cpu:0", "cpu:1"}, {"cpu:0-1", "cpu"}});
    DeviceGroup last;
    last.devices = {"cpu:0-0", "cpu:1-1"};
    last.batch_shares = {4, 4};
    last.parallelism = GroupParallelism::kTensor;
    p.groups.push_back(last);
    p.groups[1].parallelism = GroupParallelism::kData;
    p.groups[1].batch_shares = {1, 3};
    p.stages = {Stage{0, after[0], 0}, Stage{after[0] + 1, after[1], 1},
                Stage{after[1] + 1, g.num_nodes() - 1, 2}};
    return p;
  };
  const auto one = run_in_process(zoo("gpt"), input, plan, 4);
  const auto three = run_stage_ranks(zoo("gpt"), input, plan, 4, {}, 3);
  ASSERT_EQ(three[0].losses.size(), one.losses.size());
  for (size_t s = 0; s < one.losses.size(); ++s) {
    EXPECT_NEAR(three[0].losses[s], one.losses[s], 1e-6 * std::abs(one.losses[s])) << "step " << s;
    EXPECT_EQ(three[0].losses[s], three[1].losses[s]) << "step " << s;
    EXPECT_EQ(three[0].losses[s], three[2].losses[s]) << "step " << s;
  }
  EXPECT_LT(one.losses.back(), one.losses.front());
  const LoadedModel m = load(zoo("gpt"), input);
  const Plan p = plan(m.ir);
  for (int rank = 0; rank < 3; ++rank) {
    const auto used = used_by_stage(m.ir, p, rank);
    for (size_t i = 0; i < used.size(); ++i) {
      if (!used[i]) continue;
      EXPECT_TRUE(
          torch::allclose(three[static_cast<size_t>(rank)].parameters[i], one.parameters[i], 1e-5, 1e-6))
          << "rank " << rank << ", parameter " << m.ir.parameters()[i].name;
    }
  }
}

TEST(StageTransport, TwoRankPipelineOfTensorGroupsInferenceGivesTheModulesOutputs) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const auto plan = [](const Graph& g) {
    return testing::tensor_pipeline_plan(g, Mode::kInference, 4, 2, best_cut_points(g, 1)[0].after_node,
                                         {{"cpu:0", "cpu:1"}, {"cpu:0-1", "cpu"}});
  };
  LoadedModel m = load(zoo("gpt"), "4x32:i64:2048");
  const torch::Tensor want =
      m.module.forward({make_inputs({parse_input_spec("4x32:i64:2048")}, 5)[0]}).toTensor();
  const auto two = run_stage_ranks(zoo("gpt"), "4x32:i64:2048", plan, 2);
  EXPECT_TRUE(two[0].outputs.empty());
  ASSERT_EQ(two[1].outputs.size(), 1u);
  EXPECT_TRUE(torch::allclose(two[1].outputs[0], want, 1e-4, 1e-5))
      << (two[1].outputs[0] - want).abs().max().item<double>();
}

TEST(StageTransport, ARankThatNeverAnswersIsNamedWithinTheTimeout) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string message;
  run_ranks(2, [&](int rank, int port) {
    LoadedModel m = load(mlp(), "8x64");
    DistributedGroup group(env_for(rank, 2, port, 2));
    if (rank == 1) {  // joins, then never runs its stage
      std::this_thread::sleep_for(std::chrono::seconds(4));
      return;
    }
    DistributedGradientReducer reducer(group);
    DistributedStageTransport transport(group);
    EngineOptions o;
    o.local_stage = 0;
    o.transport = &transport;
    o.reducer = &reducer;
    Engine engine(m, pipeline_plan(m.ir, Mode::kTraining, Schedule::kGPipe), o);
    try {
      engine.step(batch_for(engine, "8x64"));
    } catch (const Error& err) {
      message = err.what();
    }
  });
  EXPECT_NE(message.find("step 0 failed"), std::string::npos) << message;
  EXPECT_NE(message.find("from rank 1 (stage 1): rank 1 died or stalled"), std::string::npos) << message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
}

// Branch plans across processes: each device's node list in a process of its own, every value one hands
// another a message of its own, in both directions between the two (a device may read a later value of the
// other before an earlier one: tags per transfer).
TEST(StageTransport, TwoRankBranchPlanTrainsLikeOneProcess) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  struct Case {
    std::string name, model, input;
    int microbatches;
    std::function<std::vector<int>(const Graph&)> device_of;
  };
  const std::vector<Case> cases = {
      {"branchy, branches alternated", "branchy", "8x3x32x32", 2,
       [](const Graph& g) { return testing::by_branches(g); }},
      {"branchy, random nodes (lists cross too)", "branchy", "8x3x32x32", 4,
       [](const Graph& g) { return testing::shuffled(g, 11); }},
      {"mlp, every other node", "mlp", "8x64", 1, testing::alternating},
      {"gpt, random nodes", "gpt", "4x32:i64:2048", 2,
       [](const Graph& g) { return testing::shuffled(g, 5); }},
      {"gpt, branches alternated", "gpt", "4x32:i64:2048", 2,
       [](const Graph& g) { return testing::by_branches(g); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    expect_same_training(zoo(c.model), c.input, [&](const Graph& g) {
      return testing::branch_plan(g, Mode::kTraining, 8 / (c.model == "gpt" ? 2 : 1), c.microbatches,
                                  c.device_of(g));
    });
  }
}

// Three processes: each waits on the two others, in both directions.
TEST(StageTransport, ThreeRankBranchPlanTrainsLikeOneProcess) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  expect_same_training(
      zoo("branchy"), "8x3x32x32",
      [](const Graph& g) {
        return testing::branch_plan(g, Mode::kTraining, 8, 2, testing::by_branches(g, 3));
      },
      {}, 3);
}

TEST(StageTransport, TwoRankBranchPlanInferenceGivesTheOutputsWhereTheyAreComputed) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  auto plan = [](const Graph& g) {
    return testing::branch_plan(g, Mode::kInference, 8, 2, testing::shuffled(g, 3));
  };
  const auto one = run_in_process(zoo("branchy"), "8x3x32x32", plan, 1);
  const auto two = run_stage_ranks(zoo("branchy"), "8x3x32x32", plan, 1);
  const LoadedModel m = load(zoo("branchy"), "8x3x32x32");
  const Plan p = plan(m.ir);
  const NodeId producer = m.ir.value(m.ir.outputs()[0]).producer;
  const int rank =
      std::find(p.stages[1].nodes.begin(), p.stages[1].nodes.end(), producer) != p.stages[1].nodes.end();
  EXPECT_TRUE(two[1 - rank].outputs.empty());
  ASSERT_EQ(two[rank].outputs.size(), one.outputs.size());
  for (size_t i = 0; i < one.outputs.size(); ++i) EXPECT_TRUE(two[rank].outputs[i].equal(one.outputs[i]));
}

TEST(StageTransport, EngineRefusesAStageOutsideThePlanOrNoTransport) {
  LoadedModel m = load(mlp(), "8x64");
  const Plan p = pipeline_plan(m.ir, Mode::kInference, Schedule::kGPipe);
  EngineOptions o;
  o.local_stage = 0;
  EXPECT_THROW({ Engine engine(m, p, o); }, Error);  // no transport
  struct NoTransport final : StageTransport {
    void begin_step(int) override {}
    void send(const std::vector<c10::IValue>&, const StageMessage&) override {}
    std::vector<c10::IValue> receive(const StageMessage&, size_t) override { return {}; }
    void finish_step() override {}
  } none;
  o.transport = &none;
  o.local_stage = 2;
  try {
    Engine engine(m, p, o);
    ADD_FAILURE() << "stage 2 of a 2-stage plan was accepted";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("runs stage 2 of a pipeline, but the plan has 2 stage(s)"),
              std::string::npos)
        << err.what();
  }
}

}  // namespace partita

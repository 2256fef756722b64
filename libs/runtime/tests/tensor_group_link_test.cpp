// Tensor-parallel plans with one process per device (tensor_group_link.h): every device's process runs its
// parts, meets its group over Gloo and the reducer sums the gradients; ranks are threads here, each with a
// model of its own, as processes would be.
#include "partita/runtime/tensor_group_link.h"

#include <gtest/gtest.h>

#include <cstring>

#include "../src/engine_tensor.h"
#include "loopback_ranks.h"
#include "partita/core/error.h"
#include "partita/runtime/distributed_group.h"
#include "partita/runtime/distributed_reducer.h"
#include "partita/runtime/engine.h"
#include "partita/runtime/optimizer.h"
#include "reference_training.h"

namespace partita {

namespace {

using testing::env_for;
using testing::load;
using testing::run_ranks;
using testing::train_losses;
using testing::two_cores;

// One stage on `devices` CPU devices in tensor groups of `degree` (replicas when fewer), `shares` samples of
// every microbatch per replica.
Plan tensor_plan(const Graph& g, Mode mode, int batch, int microbatches, int degree,
                 const std::vector<int>& shares) {
  Plan p;
  p.graph = graph_identity(g);
  p.mode = mode;
  p.optimizer = Optimizer::kSgdMomentum;
  p.strategy = StrategyKind::kTensor;
  p.schedule = Schedule::kOneFOneB;
  p.global_batch = batch;
  p.microbatches = microbatches;
  DeviceGroup group;
  const std::vector<std::string> cpus{"cpu:0", "cpu:1", "cpu:0-1", "cpu"};
  for (size_t r = 0; r < shares.size(); ++r) {
    for (int d = 0; d < degree; ++d) {
      group.devices.push_back(cpus.at(group.devices.size()));
      group.batch_shares.push_back(shares[r]);
    }
  }
  group.parallelism = GroupParallelism::kTensor;
  group.tensor_size = degree;
  p.groups = {group};
  p.stages = {Stage{0, g.num_nodes() - 1, 0}};
  return p;
}

struct Trained {
  std::vector<double> losses;
  std::vector<torch::Tensor> parameters;  // after training, whole
  std::vector<torch::Tensor> momentum;    // SGD's momentum buffer per parameter, whole
  std::vector<torch::Tensor> outputs;     // inference: the last step's
  int64_t model_bytes = 0;                // the model's tensors while running
  int64_t held_part_bytes = 0;            // Engine::held_part_bytes
};

int64_t model_bytes(const LoadedModel& m) {
  int64_t bytes = 0;
  for (const auto& p : m.parameters) bytes += p.numel() * static_cast<int64_t>(p.element_size());
  return bytes;
}

// The trained parameters and their momentum buffers, whole.
void keep_trained(Engine& engine, Trained& t) {
  for (const auto& p : engine.parameters()) {
    t.parameters.push_back(p.detach().clone());
    torch::Tensor momentum;
    if (engine.optimizer())
      map_parameter_state(*engine.optimizer(), p,
                          [&](const torch::Tensor& b) { return momentum = b.clone(); });
    t.momentum.push_back(momentum);
  }
}

Trained run_in_process(const std::string& model, const std::string& input, const Plan& plan, int steps) {
  LoadedModel m = load(model, input);
  Engine engine(m, plan);
  Trained out;
  if (plan.mode == Mode::kTraining) {
    out.losses = train_losses(engine, input, steps);
  } else {
    StepInputs b;
    b.inputs = make_inputs({parse_input_spec(input)}, 100);
    out.outputs = engine.step(b).outputs;
  }
  out.model_bytes = model_bytes(m);
  keep_trained(engine, out);
  return out;
}

// One rank per device of the plan's group, each a thread with a model of its own.
std::vector<Trained> run_ranks_of(const std::string& model, const std::string& input, const Plan& plan,
                                  int steps) {
  const int world = static_cast<int>(plan.groups[0].devices.size());
  const int degree = plan.groups[0].tensor_degree();
  std::vector<Trained> out(static_cast<size_t>(world));
  run_ranks(world, [&](int rank, int port) {
    LoadedModel m = load(model, input);
    DistributedGroup group(env_for(rank, world, port, 30));
    DistributedGradientReducer reducer(group);
    std::vector<int> ranks;
    for (int r = rank / degree * degree; r < (rank / degree + 1) * degree; ++r) ranks.push_back(r);
    DistributedTensorGroupLink link(group, ranks);
    EngineOptions o;
    o.local_replica = rank;
    o.tensor_link = &link;
    if (plan.mode == Mode::kTraining) o.reducer = &reducer;
    {
      Engine engine(m, plan, o);
      Trained& t = out[static_cast<size_t>(rank)];
      if (plan.mode == Mode::kTraining) {
        t.losses = train_losses(engine, input, steps);
      } else {
        StepInputs b;
        b.inputs = make_inputs({parse_input_spec(input)}, 100);
        t.outputs = engine.step(b).outputs;
      }
      t.model_bytes = model_bytes(m);
      t.held_part_bytes = engine.held_part_bytes();
      const bool held = engine.hold_whole_model();  // every rank: a collective
      EXPECT_EQ(held, t.held_part_bytes > 0);
      keep_trained(engine, t);
    }
    group.barrier("the end of the test");
  });
  return out;
}

// Every rank's losses, parameters and momentum buffers (gathered whole) equal the same plan's in one process
// (where the devices add their gradients into one .grad: the same sums, in another order where replicas add
// up). Without replicas each rank held only its parts of the split weights.
void expect_same_training(const std::string& model, const std::string& input, const Plan& plan) {
  const int steps = 5;
  const Trained one = run_in_process(model, input, plan, steps);
  const auto ranks = run_ranks_of(model, input, plan, steps);
  EXPECT_LT(one.losses.back(), one.losses.front()) << model << ": the training should lower the loss";
  for (size_t r = 0; r < ranks.size(); ++r) {
    ASSERT_EQ(ranks[r].losses.size(), one.losses.size());
    for (size_t s = 0; s < one.losses.size(); ++s)
      EXPECT_NEAR(ranks[r].losses[s], one.losses[s], 1e-6 * std::abs(one.losses[s]))
          << model << " rank " << r << " step " << s;
    ASSERT_EQ(ranks[r].parameters.size(), one.parameters.size());
    for (size_t i = 0; i < one.parameters.size(); ++i) {
      EXPECT_TRUE(torch::allclose(ranks[r].parameters[i], one.parameters[i], 1e-5, 1e-6))
          << model << " rank " << r << " parameter " << i;
      ASSERT_EQ(ranks[r].momentum[i].defined(), one.momentum[i].defined()) << "parameter " << i;
      if (one.momentum[i].defined()) {
        EXPECT_TRUE(torch::allclose(ranks[r].momentum[i], one.momentum[i], 1e-5, 1e-6))
            << model << " rank " << r << " momentum of parameter " << i;
      }
    }
    const int degree = plan.groups[0].tensor_degree();
    if (static_cast<int>(ranks.size()) == degree) {  // one tensor group: each rank held its parts only
      EXPECT_GT(ranks[r].held_part_bytes, 0) << "rank " << r;
      EXPECT_EQ(ranks[r].model_bytes, one.model_bytes - (degree - 1) * ranks[r].held_part_bytes)
          << "rank " << r;
    } else {
      EXPECT_EQ(ranks[r].held_part_bytes, 0) << "rank " << r;
      EXPECT_EQ(ranks[r].model_bytes, one.model_bytes) << "rank " << r;
    }
  }
}

}  // namespace

TEST(TensorGroupLink, TwoProcessGptTrainsLikeTheTensorPlanInOneProcess) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  LoadedModel m = load("gpt", "4x32:i64:2048");
  Plan plan = tensor_plan(m.ir, Mode::kTraining, 4, 2, 2, {2});
  expect_same_training("gpt", "4x32:i64:2048", plan);
  // Checkpointed: the recomputed forward's collectives meet across the processes too.
  plan.stages[0].checkpointing = Checkpointing::kFull;
  expect_same_training("gpt", "4x32:i64:2048", plan);
}

TEST(TensorGroupLink, FourProcessesAsTwoReplicasOfTwoWayGroupsTrainLikeOneProcess) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  LoadedModel m = load("mlp", "8x64");
  // Uneven shares: each replica's loss and gradients carry its own weight in the sum.
  expect_same_training("mlp", "8x64", tensor_plan(m.ir, Mode::kTraining, 8, 2, 2, {1, 3}));
}

TEST(TensorGroupLink, InferenceGivesEachReplicasOutputsOnEveryDevice) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const std::string input = "4x32:i64:2048";
  LoadedModel m = load("gpt", input);
  const Plan plan = tensor_plan(m.ir, Mode::kInference, 4, 1, 2, {2, 2});
  const auto inputs = make_inputs({parse_input_spec(input)}, 100);
  const torch::Tensor want = m.module.forward({inputs[0]}).toTensor();
  const auto ranks = run_ranks_of("gpt", input, plan, 1);
  for (size_t r = 0; r < ranks.size(); ++r) {
    ASSERT_EQ(ranks[r].outputs.size(), 1u) << "rank " << r;
    const torch::Tensor rows = want.narrow(0, static_cast<int64_t>(r / 2) * 2, 2);
    EXPECT_TRUE(torch::allclose(ranks[r].outputs[0], rows, 1e-4, 1e-5))
        << "rank " << r << ": max |diff| " << (ranks[r].outputs[0] - rows).abs().max().item<double>();
  }
}

// Without replicas each rank runs inference on its parts of the split weights only.
TEST(TensorGroupLink, InferenceOnTwoProcessesHoldingTheirPartsGivesTheModulesOutputs) {
  if (!two_cores()) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const std::string input = "4x32:i64:2048";
  LoadedModel m = load("gpt", input);
  const Plan plan = tensor_plan(m.ir, Mode::kInference, 4, 1, 2, {4});
  const auto inputs = make_inputs({parse_input_spec(input)}, 100);
  const torch::Tensor want = m.module.forward({inputs[0]}).toTensor();
  const int64_t whole = model_bytes(m);
  const auto ranks = run_ranks_of("gpt", input, plan, 1);
  for (size_t r = 0; r < ranks.size(); ++r) {
    ASSERT_EQ(ranks[r].outputs.size(), 1u) << "rank " << r;
    EXPECT_TRUE(torch::allclose(ranks[r].outputs[0], want, 1e-4, 1e-5))
        << "rank " << r << ": max |diff| " << (ranks[r].outputs[0] - want).abs().max().item<double>();
    EXPECT_GT(ranks[r].held_part_bytes, 0);
    EXPECT_EQ(ranks[r].model_bytes, whole - ranks[r].held_part_bytes) << "rank " << r;
  }
}

TEST(TensorGroupLink, DevicesAtDifferentCollectivesFailNamingBoth) {
  LoadedModel m = load("mlp", "8x64");
  const Graph& g = m.ir;
  for (bool shared : {true, false}) {
    std::vector<std::string> errors(2);
    run_ranks(2, [&](int rank, int port) {
      DistributedEnv e = env_for(rank, 2, port);
      e.shared_memory = shared;
      DistributedGroup group(e);
      DistributedTensorGroupLink link(group, {0, 1});
      detail::PartExchange exchange(2, &link, &g);
      exchange.reset(3);
      // The all-reduce of node 1's output (rank 0) against node 2's (rank 1), microbatch 0.
      const uint64_t key = static_cast<uint64_t>(rank + 1);
      try {
        exchange.all_parts(key, rank, torch::ones({4}));
      } catch (const Error& error) {
        errors[static_cast<size_t>(rank)] = error.what();
      }
      group.barrier("the end of the test");
    });
    for (int rank = 0; rank < 2; ++rank) {
      const std::string& e = errors[static_cast<size_t>(rank)];
      EXPECT_NE(e.find("step 3"), std::string::npos) << e;
      EXPECT_NE(e.find(describe_node(g.node(1))), std::string::npos) << e;
      EXPECT_NE(e.find(describe_node(g.node(2))), std::string::npos) << e;
      EXPECT_NE(e.find("different graphs or plans"), std::string::npos) << e;
    }
  }
}

TEST(TensorGroupLink, PartsComeBackInDeviceOrderWithTheirShapeAndType) {
  for (bool shared : {true, false}) {
    std::vector<std::vector<torch::Tensor>> got(2);
    LoadedModel m = load("mlp", "8x64");
    run_ranks(2, [&](int rank, int port) {
      DistributedEnv e = env_for(rank, 2, port);
      e.shared_memory = shared;
      DistributedGroup group(e);
      DistributedTensorGroupLink link(group, {0, 1});
      EXPECT_EQ(link.size(), 2);
      EXPECT_EQ(link.index(), rank);
      detail::PartExchange exchange(2, &link, &m.ir);
      const auto part = torch::full({2, 3}, static_cast<double>(rank + 1), torch::kFloat64);
      got[static_cast<size_t>(rank)] = exchange.all_parts(7, rank, part);
      group.barrier("the end of the test");
    });
    for (int rank = 0; rank < 2; ++rank) {
      const auto& parts = got[static_cast<size_t>(rank)];
      ASSERT_EQ(parts.size(), 2u);
      for (int d = 0; d < 2; ++d) {
        EXPECT_EQ(parts[d].scalar_type(), torch::kFloat64);
        EXPECT_EQ(parts[d].sizes(), (std::vector<int64_t>{2, 3}));
        EXPECT_TRUE(torch::equal(parts[d], torch::full({2, 3}, static_cast<double>(d + 1), torch::kFloat64)))
            << "shared " << shared << " rank " << rank << " part " << d;
      }
    }
  }
}

TEST(TensorGroupLink, EngineRefusesOneDeviceOfATensorGroupWithoutALink) {
  LoadedModel m = load("mlp", "8x64");
  const Plan plan = tensor_plan(m.ir, Mode::kTraining, 8, 1, 2, {8});
  EngineOptions o;
  o.local_replica = 1;
  try {
    Engine engine(m, plan, o);
    FAIL() << "no link";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs a link"), std::string::npos) << e.what();
  }
}

}  // namespace partita

#include "partita/runtime/checkpoint.h"

#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>

#include <torch/optim.h>

#include "partita/core/error.h"
#include "partita/runtime/optimizer.h"
#include "partita/search/graph_identity.h"
#include "partita/search/plan_json.h"

namespace partita {

namespace {

namespace fs = std::filesystem;

std::string zoo(const std::string& name) { return std::string(PARTITA_MODELS_DIR) + "/" + name + ".pt"; }

struct Fixture {
  LoadedModel model;
  CheckpointIdentity identity;
  std::vector<torch::Tensor> trainable;
};

Fixture make(const std::string& name, Optimizer optimizer, int batch = 8) {
  Fixture f{load_model(zoo(name)), {}, {}};
  for (const auto& p : f.model.parameters) {
    if (p.requires_grad()) f.trainable.push_back(p);
  }
  Plan plan;
  plan.graph = graph_identity(f.model.ir);
  plan.mode = Mode::kTraining;
  plan.optimizer = optimizer;
  plan.global_batch = batch;
  plan.groups = {DeviceGroup{{"cpu:0"}, {batch}}};
  plan.stages = {Stage{0, f.model.ir.num_nodes() - 1, 0}};
  f.identity.model_path = zoo(name);
  f.identity.model_fingerprint = model_fingerprint(f.model);
  f.identity.plan = plan;
  f.identity.inputs = {std::to_string(batch) + "x64"};
  f.identity.loss = "auto";
  f.identity.learning_rate = 0.01;
  return f;
}

// Deterministic "training": gradients drawn from a seeded generator, one optimizer step each.
void train(Fixture& f, torch::optim::Optimizer& opt, int steps, uint64_t seed) {
  torch::manual_seed(seed);
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    for (auto& p : f.trainable) p.mutable_grad() = torch::randn_like(p);
    opt.step();
  }
}

std::unique_ptr<torch::optim::Optimizer> optimizer_for(Fixture& f) {
  return make_optimizer(f.identity.plan.optimizer, f.trainable, f.identity.learning_rate);
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("partita-ckpt-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool same_tensors(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return true;
}

std::vector<torch::Tensor> clone_all(const std::vector<torch::Tensor>& v) {
  std::vector<torch::Tensor> out;
  for (const auto& t : v) out.push_back(t.detach().clone());
  return out;
}

CheckpointProgress progress_of(int steps) {
  CheckpointProgress p;
  p.steps = steps;
  for (int i = 0; i < steps; ++i) p.losses.push_back(1.0 / (i + 3));
  return p;
}

}  // namespace

TEST(Checkpoint, RoundTripRestoresParametersAndAdamStateExactly) {
  TempDir dir;
  Fixture a = make("mlp", Optimizer::kAdam);
  auto opt_a = optimizer_for(a);
  train(a, *opt_a, 3, 1);
  save_checkpoint(dir.str(), a.identity, progress_of(3), a.model.parameters, *opt_a);
  EXPECT_TRUE(has_checkpoint(dir.str()));

  Fixture b = make("mlp", Optimizer::kAdam);
  train(b, *optimizer_for(b), 1, 99);  // b's weights now differ from a's
  ASSERT_FALSE(same_tensors(a.model.parameters, b.model.parameters));
  auto opt_b = optimizer_for(b);
  const CheckpointProgress p = load_checkpoint(dir.str(), b.identity, b.model.parameters, *opt_b);
  EXPECT_EQ(p.steps, 3);
  EXPECT_EQ(p.losses, progress_of(3).losses);
  EXPECT_TRUE(same_tensors(a.model.parameters, b.model.parameters));
  for (size_t i = 0; i < a.trainable.size(); ++i) {
    const auto* state_a = parameter_state(*opt_a, a.trainable[i]);
    const auto* state_b = parameter_state(*opt_b, b.trainable[i]);
    ASSERT_TRUE(state_a != nullptr && state_b != nullptr) << "no optimizer state for parameter " << i;
    const auto& sa = static_cast<const torch::optim::AdamParamState&>(*state_a);
    const auto& sb = static_cast<const torch::optim::AdamParamState&>(*state_b);
    EXPECT_EQ(sa.step(), sb.step());
    EXPECT_TRUE(torch::equal(sa.exp_avg(), sb.exp_avg())) << "exp_avg of parameter " << i;
    EXPECT_TRUE(torch::equal(sa.exp_avg_sq(), sb.exp_avg_sq())) << "exp_avg_sq of parameter " << i;
  }
  // Continuing both with the same gradients gives the same weights: the state is complete.
  train(a, *opt_a, 2, 7);
  train(b, *opt_b, 2, 7);
  EXPECT_TRUE(same_tensors(a.model.parameters, b.model.parameters));
}

TEST(Checkpoint, RoundTripRestoresSgdMomentum) {
  TempDir dir;
  Fixture a = make("mlp", Optimizer::kSgdMomentum);
  auto opt_a = optimizer_for(a);
  train(a, *opt_a, 2, 1);
  save_checkpoint(dir.str(), a.identity, progress_of(2), a.model.parameters, *opt_a);
  Fixture b = make("mlp", Optimizer::kSgdMomentum);
  auto opt_b = optimizer_for(b);
  load_checkpoint(dir.str(), b.identity, b.model.parameters, *opt_b);
  train(a, *opt_a, 3, 5);
  train(b, *opt_b, 3, 5);
  // Without the momentum buffers b would take different steps.
  EXPECT_TRUE(same_tensors(a.model.parameters, b.model.parameters));
}

// An asynchronous save: the snapshot taken after step 3 is written on the background writer while training
// goes on (two more steps change every parameter and every optimizer state tensor in place); what it writes
// equals a synchronous save after step 3, and the training that went on took the same steps as without a
// snapshot.
// Generator states of distinct seeds, named.
DrawStates states_of(std::initializer_list<std::pair<std::string, uint64_t>> seeds) {
  DrawStates states;
  for (const auto& [name, seed] : seeds)
    states[name] = at::make_generator<at::CPUGeneratorImpl>(seed).get_state();
  return states;
}

bool same_states(const DrawStates& a, const DrawStates& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, state] : a) {
    if (b.count(name) == 0 || !torch::equal(state, b.at(name))) return false;
  }
  return true;
}

// A whole checkpoint keeps the random generators' states it is given, by name, and one saved without them
// gives none back (an older checkpoint).
TEST(Checkpoint, KeepsTheRandomGeneratorsStates) {
  Fixture a = make("mlp", Optimizer::kSgdMomentum);
  auto opt_a = optimizer_for(a);
  CheckpointProgress progress = progress_of(2);
  progress.draws = states_of({{"stage0_device0", 5}, {"stage0_device0_group", 6}});
  TempDir dir;
  const std::string with = dir.str() + "/with", without = dir.str() + "/without";
  save_checkpoint(with, a.identity, progress, a.model.parameters, *opt_a);
  save_checkpoint(without, a.identity, progress_of(2), a.model.parameters, *opt_a);
  Fixture b = make("mlp", Optimizer::kSgdMomentum);
  auto opt_b = optimizer_for(b);
  const CheckpointProgress back = load_checkpoint(with, b.identity, b.model.parameters, *opt_b);
  EXPECT_TRUE(same_states(back.draws, progress.draws));
  EXPECT_FALSE(torch::equal(back.draws.begin()->second, back.draws.rbegin()->second));
  EXPECT_TRUE(load_checkpoint(without, b.identity, b.model.parameters, *opt_b).draws.empty());
}

TEST(Checkpoint, ASnapshotWrittenWhileTrainingGoesOnHoldsItsStepsState) {
  for (Optimizer kind : {Optimizer::kAdam, Optimizer::kSgdMomentum}) {
    SCOPED_TRACE(static_cast<int>(kind));
    TempDir dir;
    const std::string sync_dir = dir.str() + "/sync", async_dir = dir.str() + "/async";
    Fixture a = make("mlp", kind), plain = make("mlp", kind);
    auto opt_a = optimizer_for(a);
    auto opt_plain = optimizer_for(plain);
    train(a, *opt_a, 3, 1);
    train(plain, *opt_plain, 3, 1);
    save_checkpoint(sync_dir, a.identity, progress_of(3), a.model.parameters, *opt_a);
    {
      BackgroundCheckpointWriter writer;
      auto snapshot = std::make_shared<CheckpointSnapshot>(
          snapshot_checkpoint(progress_of(3), a.model.parameters, *opt_a));
      train(a, *opt_a, 1, 7);  // before the write starts (so a snapshot sharing live tensors fails for sure)
      writer.submit([&, snapshot] { write_checkpoint(async_dir, a.identity, *snapshot); });
      train(a, *opt_a, 1, 8);  // while it runs
      writer.wait();
    }
    train(plain, *opt_plain, 1, 7);
    train(plain, *opt_plain, 1, 8);
    EXPECT_TRUE(same_tensors(a.model.parameters, plain.model.parameters))
        << "the snapshot changed the training";

    Fixture from_sync = make("mlp", kind), from_async = make("mlp", kind);
    auto opt_sync = optimizer_for(from_sync);
    auto opt_async = optimizer_for(from_async);
    load_checkpoint(sync_dir, from_sync.identity, from_sync.model.parameters, *opt_sync);
    EXPECT_EQ(load_checkpoint(async_dir, from_async.identity, from_async.model.parameters, *opt_async).steps,
              3);
    EXPECT_TRUE(same_tensors(from_sync.model.parameters, from_async.model.parameters));
    EXPECT_FALSE(same_tensors(from_async.model.parameters, a.model.parameters)) << "it holds a later step";
    // The optimizer state too: the same two steps from both give the weights training reached.
    for (auto [f, opt] : {std::pair{&from_sync, opt_sync.get()}, std::pair{&from_async, opt_async.get()}}) {
      train(*f, *opt, 1, 7);
      train(*f, *opt, 1, 8);
    }
    EXPECT_TRUE(same_tensors(from_sync.model.parameters, from_async.model.parameters));
    EXPECT_TRUE(same_tensors(from_async.model.parameters, a.model.parameters));
  }
}

// A background save's error reaches the training thread at the next submit() or wait(), once.
TEST(Checkpoint, ABackgroundSavesErrorIsRethrownWhereTheRunWaits) {
  BackgroundCheckpointWriter writer;
  writer.submit([] { PARTITA_FAIL("cannot write /full/state.pt; check space"); });
  EXPECT_EQ(error_of([&] { writer.wait(); }), "cannot write /full/state.pt; check space");
  EXPECT_EQ(error_of([&] { writer.wait(); }), "(no error)");
  writer.submit([] { PARTITA_FAIL("second save failed"); });
  int ran = 0;
  EXPECT_EQ(error_of([&] { writer.submit([&ran] { ++ran; }); }), "second save failed");
  EXPECT_EQ(ran, 0);  // the save after a failed one does not start
  writer.submit([&ran] { ++ran; });
  writer.wait();
  EXPECT_EQ(ran, 1);
}

// checkpoint_plan: the plan of the checkpoint LATEST names (what a rebalanced run resumes with).
TEST(Checkpoint, ThePlanOfTheLatestCheckpointIsReadBack) {
  TempDir dir;
  Fixture a = make("mlp", Optimizer::kAdam);
  auto opt = optimizer_for(a);
  EXPECT_NE(error_of([&] { checkpoint_plan(dir.str()); }).find("no checkpoint in"), std::string::npos);
  save_checkpoint(dir.str(), a.identity, progress_of(1), a.model.parameters, *opt);
  a.identity.plan.source.model = zoo("mlp");
  a.identity.plan.source.inputs = {"8x64"};
  a.identity.plan.source.devices = "cpu:0";
  a.identity.plan.source.device_slowdowns["cpu:0"] = 2.0;
  a.identity.plan.stages[0].checkpointing = Checkpointing::kFull;
  save_checkpoint(dir.str(), a.identity, progress_of(2), a.model.parameters, *opt);
  const Plan back = checkpoint_plan(dir.str());
  EXPECT_EQ(plan_to_json(back), plan_to_json(a.identity.plan));
  EXPECT_EQ(back.source.device_slowdowns.at("cpu:0"), 2.0);
}

TEST(Checkpoint, WriterDyingMidwayLeavesThePreviousCheckpoint) {
  TempDir dir;
  Fixture a = make("mlp", Optimizer::kAdam);
  auto opt = optimizer_for(a);
  train(a, *opt, 1, 1);
  save_checkpoint(dir.str(), a.identity, progress_of(1), a.model.parameters, *opt);
  const auto at_step_1 = clone_all(a.model.parameters);
  train(a, *opt, 1, 2);
  for (const std::string point : {"files_written", "before_commit"}) {
    const auto die = [&point](std::string_view at) {
      if (at == point) throw std::runtime_error("writer killed at " + std::string(at));
    };
    EXPECT_THROW(save_checkpoint(dir.str(), a.identity, progress_of(2), a.model.parameters, *opt, die),
                 std::runtime_error);
    Fixture b = make("mlp", Optimizer::kAdam);
    auto opt_b = optimizer_for(b);
    const CheckpointProgress p = load_checkpoint(dir.str(), b.identity, b.model.parameters, *opt_b);
    EXPECT_EQ(p.steps, 1) << "after dying at " << point;
    EXPECT_TRUE(same_tensors(b.model.parameters, at_step_1)) << "after dying at " << point;
  }
  // The next save commits and removes what the dead writers left.
  save_checkpoint(dir.str(), a.identity, progress_of(2), a.model.parameters, *opt);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"LATEST", "step-00000002"}));
  Fixture c = make("mlp", Optimizer::kAdam);
  auto opt_c = optimizer_for(c);
  EXPECT_EQ(load_checkpoint(dir.str(), c.identity, c.model.parameters, *opt_c).steps, 2);
  EXPECT_TRUE(same_tensors(c.model.parameters, a.model.parameters));
}

// --checkpoint-keep: the newest N stay; pointing LATEST back at a kept one and saving again drops the
// checkpoints after it (another history), keeping N up to the new one.
TEST(Checkpoint, KeepsTheNewestAndGoesBackToAnEarlierOne) {
  TempDir dir;
  Fixture a = make("mlp", Optimizer::kSgdMomentum);
  auto opt = optimizer_for(a);
  const auto names = [&] {
    std::vector<std::string> n;
    for (const auto& e : fs::directory_iterator(dir.path)) n.push_back(e.path().filename().string());
    std::sort(n.begin(), n.end());
    return n;
  };
  std::vector<std::vector<torch::Tensor>> saved;
  for (int step = 2; step <= 8; step += 2) {
    train(a, *opt, 2, static_cast<uint64_t>(step));
    save_checkpoint(dir.str(), a.identity, progress_of(step), a.model.parameters, *opt, {}, /*keep=*/3);
    saved.push_back(clone_all(a.model.parameters));
  }
  EXPECT_EQ(names(), (std::vector<std::string>{"LATEST", "step-00000004", "step-00000006", "step-00000008"}));
  {
    std::ofstream latest(dir.path / "LATEST");
    latest << "step-00000004\n";
  }
  Fixture b = make("mlp", Optimizer::kSgdMomentum);
  auto opt_b = optimizer_for(b);
  EXPECT_EQ(load_checkpoint(dir.str(), b.identity, b.model.parameters, *opt_b).steps, 4);
  EXPECT_TRUE(same_tensors(b.model.parameters, saved[1]));
  train(b, *opt_b, 1, 99);
  save_checkpoint(dir.str(), b.identity, progress_of(5), b.model.parameters, *opt_b, {}, /*keep=*/3);
  EXPECT_EQ(names(), (std::vector<std::string>{"LATEST", "step-00000004", "step-00000005"}));
  // keep 1 (the default): only the new one.
  save_checkpoint(dir.str(), b.identity, progress_of(6), b.model.parameters, *opt_b);
  EXPECT_EQ(names(), (std::vector<std::string>{"LATEST", "step-00000006"}));
  EXPECT_NE(error_of([&] {
              save_checkpoint(dir.str(), b.identity, progress_of(7), b.model.parameters, *opt_b, {}, 0);
            }).find("keep at least 1"),
            std::string::npos);
}

TEST(Checkpoint, RefusesWhatDoesNotMatch) {
  TempDir dir;
  Fixture a = make("mlp", Optimizer::kAdam);
  auto opt = optimizer_for(a);
  const auto load_into = [&](Fixture& f) {
    auto o = optimizer_for(f);
    load_checkpoint(dir.str(), f.identity, f.model.parameters, *o);
  };
  EXPECT_NE(error_of([&] { load_into(a); }).find("no checkpoint in " + dir.str()), std::string::npos);
  save_checkpoint(dir.str(), a.identity, progress_of(1), a.model.parameters, *opt);
  const auto original = clone_all(a.model.parameters);

  Fixture cnn = make("cnn", Optimizer::kAdam);
  EXPECT_NE(error_of([&] { load_into(cnn); }).find("was written for another model"), std::string::npos);
  Fixture batch = make("mlp", Optimizer::kAdam, 16);
  EXPECT_NE(error_of([&] { load_into(batch); }).find("was written for global batch 8 but the plan has 16"),
            std::string::npos);
  Fixture sgd = make("mlp", Optimizer::kSgd);
  const std::string plan_error = error_of([&] { load_into(sgd); });
  EXPECT_NE(plan_error.find("another plan (\"optimizer\": \"adam\", the plan has \"sgd\")"),
            std::string::npos)
      << plan_error;
  Fixture lr = make("mlp", Optimizer::kAdam);
  lr.identity.learning_rate = 0.02;
  EXPECT_NE(error_of([&] { load_into(lr); }).find("--lr 0.01 but got 0.02"), std::string::npos);
  Fixture inputs = make("mlp", Optimizer::kAdam);
  inputs.identity.inputs = {"8x64:f32"};
  EXPECT_NE(error_of([&] { load_into(inputs); }).find("--input 8x64 but got 8x64:f32"), std::string::npos);

  // A manifest that lists one tensor twice (and so another not at all): the file holds as many tensors as
  // the list, and the one left out kept the model's own value.
  const fs::path manifest = dir.path / "step-00000001" / "manifest.json";
  const Json saved = read_json_file(manifest.string());
  Json twice = saved;
  twice["shards"][0]["tensors"][1] = 0;
  write_json_file(manifest.string(), twice);
  Fixture listed = make("mlp", Optimizer::kAdam);
  const auto untouched = clone_all(listed.model.parameters);
  const std::string twice_error = error_of([&] { load_into(listed); });
  EXPECT_NE(twice_error.find("lists model tensor 0 twice; the checkpoint is damaged"), std::string::npos)
      << twice_error;
  EXPECT_TRUE(same_tensors(listed.model.parameters, untouched)) << "a refused load must not touch the model";
  // A format or version of another type (nlohmann's type errors were internal errors).
  Json other = saved;
  other["format"] = 2;
  write_json_file(manifest.string(), other);
  EXPECT_NE(error_of([&] { load_into(listed); }).find("is not a partita checkpoint manifest"),
            std::string::npos);
  other = saved;
  other["version"] = "3";
  write_json_file(manifest.string(), other);
  EXPECT_NE(error_of([&] { load_into(listed); }).find("has format version 0 but this partita reads"),
            std::string::npos);
  write_json_file(manifest.string(), saved);

  // Damaged files: truncated, then one byte changed, then a LATEST that names nothing.
  const fs::path state = dir.path / "step-00000001" / "state.pt";
  const auto size = fs::file_size(state);
  std::string bytes;
  {
    std::ifstream in(state, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  fs::resize_file(state, size / 2);
  Fixture b = make("mlp", Optimizer::kAdam);
  const auto before = clone_all(b.model.parameters);
  EXPECT_NE(error_of([&] { load_into(b); }).find("(truncated or replaced)"), std::string::npos);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x5a);
  {
    std::ofstream out(state, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  EXPECT_NE(error_of([&] { load_into(b); }).find("(corrupt)"), std::string::npos);
  EXPECT_TRUE(same_tensors(b.model.parameters, before)) << "a refused load must not touch the model";
  {
    std::ofstream out(dir.path / "LATEST", std::ios::trunc);
    out << "garbage\n";
  }
  EXPECT_NE(error_of([&] { load_into(b); }).find("names 'garbage', not a step directory"), std::string::npos);
  EXPECT_TRUE(same_tensors(a.model.parameters, original));
}

namespace {

// A 2-stage pipeline plan of the fixture's model (the node order cut in half), as two ranks would run it.
void make_pipeline(Fixture& f) {
  Plan& plan = f.identity.plan;
  const int n = f.model.ir.num_nodes();
  plan.strategy = StrategyKind::kPipeline;
  plan.microbatches = 2;
  plan.groups = {DeviceGroup{{"cpu:0"}, {plan.global_batch / 2}},
                 DeviceGroup{{"cpu:1"}, {plan.global_batch / 2}}};
  plan.stages = {Stage{0, n / 2 - 1, 0}, Stage{n / 2, n - 1, 1}};
}

// What rank `rank` of the pipeline trains: gradients for its stage's trainable tensors only (the others get
// none, as in a real rank, and the optimizer leaves them alone).
void train_stage(Fixture& f, torch::optim::Optimizer& opt, int rank, int steps, uint64_t seed) {
  const auto held = stage_tensor_indices(f.model, f.identity.plan, rank);
  torch::manual_seed(seed);
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    for (const int64_t i : held) {
      auto& p = f.model.parameters[static_cast<size_t>(i)];
      if (p.requires_grad()) p.mutable_grad() = torch::randn_like(p);
    }
    opt.step();
  }
}

}  // namespace

TEST(Checkpoint, StageTensorsOfAPipelineCoverTheModelOnce) {
  Fixture f = make("mlp", Optimizer::kAdam);
  make_pipeline(f);
  const auto s0 = stage_tensor_indices(f.model, f.identity.plan, 0);
  const auto s1 = stage_tensor_indices(f.model, f.identity.plan, 1);
  ASSERT_FALSE(s0.empty());
  ASSERT_FALSE(s1.empty());
  std::vector<int64_t> both = s0;
  both.insert(both.end(), s1.begin(), s1.end());
  std::sort(both.begin(), both.end());
  std::vector<int64_t> all(f.model.parameters.size());
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(both, all) << "the mlp shares no weight across its stages: every tensor in exactly one shard";
  // Each stage holds exactly the tensors its nodes read.
  for (int st = 0; st < 2; ++st) {
    const Stage& stage = f.identity.plan.stages[static_cast<size_t>(st)];
    for (const int64_t i : stage_tensor_indices(f.model, f.identity.plan, st)) {
      const auto& users = f.model.ir.value(f.model.ir.parameters()[static_cast<size_t>(i)].value).users;
      EXPECT_TRUE(std::any_of(users.begin(), users.end(),
                              [&](NodeId u) { return u >= stage.first && u <= stage.last; }))
          << "stage " << st << " holds tensor " << i << " but none of its nodes reads it";
    }
  }
}

// The two ranks of a 2-stage MLP pipeline, each with its own copy of the model and its Adam optimizer.
struct PipelineRanks {
  std::vector<Fixture> ranks;
  std::vector<std::unique_ptr<torch::optim::Optimizer>> opts;
};
PipelineRanks pipeline_ranks() {
  PipelineRanks p;
  for (int r = 0; r < 2; ++r) {
    p.ranks.push_back(make("mlp", Optimizer::kAdam));
    make_pipeline(p.ranks.back());
    p.opts.push_back(optimizer_for(p.ranks.back()));
  }
  return p;
}

TEST(Checkpoint, ShardsOfAPipelineRestoreEachRanksStageAndOptimizerState) {
  TempDir dir;
  // Two ranks, each with its own copy of the model, train their stages.
  PipelineRanks pipeline = pipeline_ranks();
  auto& [ranks, opts] = pipeline;
  const auto initial = clone_all(ranks[0].model.parameters);
  const auto save = [&](int steps) {
    std::vector<CheckpointShard> shards;
    for (int r = 0; r < 2; ++r) {
      const CheckpointShard shard =
          write_checkpoint_shard(dir.str(), steps, r, ranks[r].model.parameters,
                                 stage_tensor_indices(ranks[r].model, ranks[r].identity.plan, r), *opts[r]);
      shards.push_back(checkpoint_shard_from_json(Json::parse(checkpoint_shard_to_json(shard).dump())));
    }
    commit_checkpoint_shards(dir.str(), ranks[0].identity, progress_of(steps), shards);
  };
  for (int r = 0; r < 2; ++r) train_stage(ranks[r], *opts[r], r, 3, 10 + r);
  save(3);
  for (int r = 0; r < 2; ++r) train_stage(ranks[r], *opts[r], r, 2, 20 + r);
  save(5);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"LATEST", "step-00000005"}));
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir.path / "step-00000005")) {
    files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"manifest.json", "plan.json", "rank-0.pt", "rank-1.pt"}));

  for (int r = 0; r < 2; ++r) {
    Fixture fresh = make("mlp", Optimizer::kAdam);
    make_pipeline(fresh);
    auto opt = optimizer_for(fresh);
    EXPECT_EQ(load_checkpoint(dir.str(), fresh.identity, fresh.model.parameters, *opt, r).steps, 5);
    const auto held = stage_tensor_indices(fresh.model, fresh.identity.plan, r);
    for (size_t i = 0; i < fresh.model.parameters.size(); ++i) {
      const bool own = std::find(held.begin(), held.end(), static_cast<int64_t>(i)) != held.end();
      // Its stage's tensors are the rank's trained ones; the rest keep the model file's values, as in the
      // rank that wrote it (it never trains them).
      EXPECT_TRUE(torch::equal(fresh.model.parameters[i], own ? ranks[r].model.parameters[i] : initial[i]))
          << "rank " << r << ", tensor " << i;
    }
    // Same optimizer state: both go on identically.
    train_stage(fresh, *opt, r, 2, 30 + r);
    train_stage(ranks[r], *opts[r], r, 2, 30 + r);
    EXPECT_TRUE(same_tensors(fresh.model.parameters, ranks[r].model.parameters)) << "rank " << r;
  }
}

// A job of several processes keeps every rank's generator states: a data-parallel or tensor-parallel job's in
// the whole checkpoint (rank 0 writes them all, posted to it as bytes), which any process loads whole, so a
// job resumes in another number of processes (each restores its workers' states by name); pipeline ranks
// each in its shard.
TEST(Checkpoint, KeepsEveryRanksRandomGeneratorStates) {
  const DrawStates rank0 = states_of({{"stage0_device0", 5}}), rank1 = states_of({{"stage0_device1", 7}});
  ASSERT_TRUE(same_states(draws_from_bytes(draws_to_bytes(rank1)), rank1));
  EXPECT_EQ(error_of([] { draws_from_bytes("not an archive"); })
                .rfind("cannot read 14 bytes of random generator "
                       "states: ",
                       0),
            0u);
  {  // data-parallel: one whole checkpoint
    Fixture a = make("mlp", Optimizer::kSgdMomentum);
    auto opt_a = optimizer_for(a);
    CheckpointProgress progress = progress_of(2);
    progress.draws = states_of({{"stage0_device0", 5}, {"stage0_device1", 7}});
    TempDir dir;
    save_checkpoint(dir.str(), a.identity, progress, a.model.parameters, *opt_a);
    Fixture b = make("mlp", Optimizer::kSgdMomentum);
    auto opt_b = optimizer_for(b);
    for (int rank : {-1, 0, 1, 2}) {
      EXPECT_TRUE(same_states(load_checkpoint(dir.str(), b.identity, b.model.parameters, *opt_b, rank).draws,
                              progress.draws))
          << "rank " << rank;
    }
  }
  {  // a pipeline: a shard per rank
    TempDir dir;
    PipelineRanks pipeline = pipeline_ranks();
    auto& [ranks, opts] = pipeline;
    const DrawStates stage0 = states_of({{"stage0_device0", 5}}), stage1 = states_of({{"stage1_device0", 7}});
    std::vector<CheckpointShard> shards;
    for (int r = 0; r < 2; ++r) {
      shards.push_back(write_checkpoint_shard(dir.str(), 3, r, ranks[r].model.parameters,
                                              stage_tensor_indices(ranks[r].model, ranks[r].identity.plan, r),
                                              *opts[r], r == 0 ? stage0 : stage1));
    }
    commit_checkpoint_shards(dir.str(), ranks[0].identity, progress_of(3), shards);
    for (int r = 0; r < 2; ++r) {
      Fixture fresh = make("mlp", Optimizer::kAdam);
      make_pipeline(fresh);
      auto opt = optimizer_for(fresh);
      EXPECT_TRUE(
          same_states(load_checkpoint(dir.str(), fresh.identity, fresh.model.parameters, *opt, r).draws,
                      r == 0 ? stage0 : stage1))
          << "rank " << r;
    }
  }
}

// FNV-1a 64 of a file, 16 hex digits, from the standard offset basis (as version 3 describes its state
// files) or from another (versions 1 and 2 started from 1469598103934665603).
std::string fnv1a64_of(const fs::path& path, uint64_t basis = 14695981039346656037ULL) {
  std::ifstream in(path, std::ios::binary);
  uint64_t h = basis;
  for (char c; in.get(c);) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

// A version-3 state file's hash is the standard FNV-1a 64 of its bytes. A version-2 whole checkpoint hashed
// its files from another start and kept its writer's states by position ("draws": "0", "1", ...) and a
// data-parallel job's rank R's apart ("draws-rank-R"): each rank still gets its own, positional, and a rank
// for which it kept none gets none.
TEST(Checkpoint, ReadsVersionTwoPositionalRandomGeneratorStates) {
  TempDir dir;
  Fixture a = make("mlp", Optimizer::kSgdMomentum);
  auto opt = optimizer_for(a);
  save_checkpoint(dir.str(), a.identity, progress_of(2), a.model.parameters, *opt);
  const fs::path step = dir.path / "step-00000002";
  const fs::path manifest = step / "manifest.json";
  Json m = read_json_file(manifest.string());
  const fs::path state = step / m.at("shards").at(0).at("file").get<std::string>();
  // Version 3 describes its files with the standard FNV-1a 64 (versions 1 and 2 started from a short basis).
  EXPECT_EQ(m.at("shards").at(0).at("fnv1a64").get<std::string>(), fnv1a64_of(state));
  // The state file as version 2 wrote it for a 2-process job.
  const DrawStates rank0 = states_of({{"0", 5}, {"1", 6}}), rank1 = states_of({{"0", 7}});
  {
    torch::serialize::OutputArchive archive, tensors, optimizer, draws0, draws1;
    for (size_t i = 0; i < a.model.parameters.size(); ++i)
      tensors.write(std::to_string(i), a.model.parameters[i]);
    opt->save(optimizer);
    for (const auto& [k, v] : rank0) draws0.write(k, v);
    for (const auto& [k, v] : rank1) draws1.write(k, v);
    archive.write("tensors", tensors);
    archive.write("optimizer", optimizer);
    archive.write("draws", draws0);
    archive.write("draws-rank-1", draws1);
    archive.save_to(state.string());
  }
  m["version"] = 2;
  m["shards"][0]["bytes"] = static_cast<int64_t>(fs::file_size(state));
  m["shards"][0]["fnv1a64"] = fnv1a64_of(state, 1469598103934665603ULL);
  write_json_file(manifest.string(), m);
  Fixture b = make("mlp", Optimizer::kSgdMomentum);
  auto opt_b = optimizer_for(b);
  EXPECT_TRUE(
      same_states(load_checkpoint(dir.str(), b.identity, b.model.parameters, *opt_b, -1).draws, rank0));
  EXPECT_TRUE(
      same_states(load_checkpoint(dir.str(), b.identity, b.model.parameters, *opt_b, 0).draws, rank0));
  EXPECT_TRUE(
      same_states(load_checkpoint(dir.str(), b.identity, b.model.parameters, *opt_b, 1).draws, rank1));
  EXPECT_TRUE(load_checkpoint(dir.str(), b.identity, b.model.parameters, *opt_b, 2).draws.empty());
  EXPECT_TRUE(same_tensors(a.model.parameters, b.model.parameters));
}

// A pipeline rank's save in the background: shard snapshots taken at step 3, written and committed while
// both stages train on, hold step 3's state, as shards written at once do.
TEST(Checkpoint, ShardSnapshotsWrittenWhileTheStagesTrainOnHoldTheirStepsState) {
  TempDir dir;
  const std::string sync_dir = dir.str() + "/sync", async_dir = dir.str() + "/async";
  PipelineRanks pipeline = pipeline_ranks();
  auto& [ranks, opts] = pipeline;
  const auto held = [&](int r) { return stage_tensor_indices(ranks[r].model, ranks[r].identity.plan, r); };
  for (int r = 0; r < 2; ++r) train_stage(ranks[r], *opts[r], r, 3, 10 + r);
  std::vector<CheckpointShard> sync_shards;
  for (int r = 0; r < 2; ++r) {
    sync_shards.push_back(
        write_checkpoint_shard(sync_dir, 3, r, ranks[r].model.parameters, held(r), *opts[r]));
  }
  commit_checkpoint_shards(sync_dir, ranks[0].identity, progress_of(3), sync_shards);
  std::vector<std::shared_ptr<CheckpointSnapshot>> snapshots;
  for (int r = 0; r < 2; ++r) {
    snapshots.push_back(std::make_shared<CheckpointSnapshot>(
        snapshot_checkpoint_shard(progress_of(3), ranks[r].model.parameters, held(r), *opts[r])));
  }
  for (int r = 0; r < 2; ++r) train_stage(ranks[r], *opts[r], r, 1, 20 + r);  // before the writes start
  {
    BackgroundCheckpointWriter writer;
    writer.submit([&] {
      std::vector<CheckpointShard> shards;
      for (int r = 0; r < 2; ++r) shards.push_back(write_checkpoint_shard(async_dir, r, *snapshots[r]));
      commit_checkpoint_shards(async_dir, ranks[0].identity, snapshots[0]->progress, shards);
    });
    for (int r = 0; r < 2; ++r) train_stage(ranks[r], *opts[r], r, 1, 30 + r);  // while they run
    writer.wait();
  }
  for (int r = 0; r < 2; ++r) {
    Fixture from_sync = make("mlp", Optimizer::kAdam), from_async = make("mlp", Optimizer::kAdam);
    make_pipeline(from_sync);
    make_pipeline(from_async);
    auto opt_sync = optimizer_for(from_sync);
    auto opt_async = optimizer_for(from_async);
    load_checkpoint(sync_dir, from_sync.identity, from_sync.model.parameters, *opt_sync, r);
    EXPECT_EQ(
        load_checkpoint(async_dir, from_async.identity, from_async.model.parameters, *opt_async, r).steps, 3);
    EXPECT_TRUE(same_tensors(from_sync.model.parameters, from_async.model.parameters)) << "rank " << r;
    EXPECT_FALSE(same_tensors(from_async.model.parameters, ranks[r].model.parameters))
        << "rank " << r << ": it holds a later step";
    // The optimizer state too: the two steps training took from step 3, from both, reach the rank's weights.
    for (auto [f, opt] : {std::pair{&from_sync, opt_sync.get()}, std::pair{&from_async, opt_async.get()}}) {
      train_stage(*f, *opt, r, 1, 20 + r);
      train_stage(*f, *opt, r, 1, 30 + r);
    }
    EXPECT_TRUE(same_tensors(from_sync.model.parameters, from_async.model.parameters)) << "rank " << r;
    EXPECT_TRUE(same_tensors(from_async.model.parameters, ranks[r].model.parameters)) << "rank " << r;
  }
}

TEST(Checkpoint, ShardedCheckpointsRefuseOtherLayoutsAndMissingOrDamagedShards) {
  TempDir dir;
  Fixture a = make("mlp", Optimizer::kAdam);
  make_pipeline(a);
  auto opt = optimizer_for(a);
  const auto shard_of = [&](int steps, int rank) {
    return write_checkpoint_shard(dir.str(), steps, rank, a.model.parameters,
                                  stage_tensor_indices(a.model, a.identity.plan, rank), *opt);
  };
  commit_checkpoint_shards(dir.str(), a.identity, progress_of(2), {shard_of(2, 0), shard_of(2, 1)});
  const auto load_as = [&](int rank) {
    Fixture f = make("mlp", Optimizer::kAdam);
    make_pipeline(f);
    auto o = optimizer_for(f);
    return load_checkpoint(dir.str(), f.identity, f.model.parameters, *o, rank).steps;
  };
  EXPECT_NE(error_of([&] { load_as(-1); }).find("was written by a pipeline of 2 processes"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_as(2); }).find("has no state file for rank 2"), std::string::npos);

  // Rank 1 died before writing its shard of step 4: nothing is committed, step 2 stays.
  const CheckpointShard lone = shard_of(4, 0);
  CheckpointShard ghost = lone;
  ghost.rank = 1;
  ghost.file = "rank-1.pt";
  const std::string missing = error_of([&] {
    commit_checkpoint_shards(dir.str(), a.identity, progress_of(4), {lone, ghost});
  });
  EXPECT_NE(missing.find("rank 1's state file"), std::string::npos) << missing;
  EXPECT_NE(missing.find("is missing"), std::string::npos) << missing;
  const std::string misordered =
      error_of([&] { commit_checkpoint_shards(dir.str(), a.identity, progress_of(4), {ghost}); });
  EXPECT_NE(misordered.find("shard 0 comes from rank 1"), std::string::npos) << misordered;
  EXPECT_EQ(load_as(0), 2);
  EXPECT_EQ(load_as(1), 2);

  // The next complete save commits and removes the dead step's leftovers.
  commit_checkpoint_shards(dir.str(), a.identity, progress_of(4), {shard_of(4, 0), shard_of(4, 1)});
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"LATEST", "step-00000004"}));

  // A damaged shard is named.
  fs::resize_file(dir.path / "step-00000004" / "rank-1.pt", 100);
  EXPECT_EQ(load_as(0), 4);
  const std::string damaged = error_of([&] { load_as(1); });
  EXPECT_NE(damaged.find("rank-1.pt has 100 bytes but its manifest says"), std::string::npos) << damaged;
}

TEST(Checkpoint, ReadsVersionOneCheckpoints) {
  TempDir dir;
  Fixture a = make("mlp", Optimizer::kSgdMomentum);
  auto opt = optimizer_for(a);
  train(a, *opt, 2, 4);
  save_checkpoint(dir.str(), a.identity, progress_of(2), a.model.parameters, *opt);
  // Rewrite the manifest as version 1 wrote it: one state file described at the top level.
  const fs::path manifest = dir.path / "step-00000002" / "manifest.json";
  Json m = read_json_file(manifest.string());
  const Json shard = m.at("shards").at(0);
  m.erase("shards");
  m["version"] = 1;
  m["state_file"] = shard.at("file");
  m["state_bytes"] = shard.at("bytes");
  m["state_fnv1a64"] = fnv1a64_of(manifest.parent_path() / shard.at("file").get<std::string>(),
                                  1469598103934665603ULL);  // version 1's start
  write_json_file(manifest.string(), m);
  Fixture b = make("mlp", Optimizer::kSgdMomentum);
  auto opt_b = optimizer_for(b);
  EXPECT_EQ(load_checkpoint(dir.str(), b.identity, b.model.parameters, *opt_b).steps, 2);
  EXPECT_TRUE(same_tensors(a.model.parameters, b.model.parameters));
  // A whole checkpoint loads into any rank (data-parallel ranks all hold every tensor).
  Fixture c = make("mlp", Optimizer::kSgdMomentum);
  auto opt_c = optimizer_for(c);
  EXPECT_EQ(load_checkpoint(dir.str(), c.identity, c.model.parameters, *opt_c, 1).steps, 2);
  EXPECT_TRUE(same_tensors(a.model.parameters, c.model.parameters));
}

TEST(Checkpoint, FingerprintIgnoresWeightsButNotArchitecture) {
  Fixture a = make("mlp", Optimizer::kAdam);
  const std::string before = model_fingerprint(a.model);
  auto opt = optimizer_for(a);
  train(a, *opt, 1, 3);
  EXPECT_EQ(model_fingerprint(a.model), before);
  EXPECT_NE(model_fingerprint(make("cnn", Optimizer::kAdam).model), before);
  EXPECT_EQ(before.size(), 16u);
}

}  // namespace partita

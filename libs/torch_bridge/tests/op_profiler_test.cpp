#include "partita/torch_bridge/op_profiler.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "zoo.h"

namespace partita {
namespace {

class OpProfilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ =
        std::filesystem::temp_directory_path() / ("partita-op-cache-" + std::to_string(getpid()) + ".json");
    std::filesystem::remove(cache_);
    model_ = load_model(testing::zoo_model("mlp"));
    specs_ = {parse_input_spec("8x64")};
    annotate_shapes(model_, specs_);
  }
  void TearDown() override { std::filesystem::remove(cache_); }

  OpProfileOptions options(bool backward) const {
    OpProfileOptions o;
    o.backward = backward;
    o.timing = TimingOptions{1, 2, 5, Seconds(0.005), {}};
    o.cache_path = cache_.string();
    o.max_cached_spread = 1e9;  // reuse every entry unless a test says otherwise
    o.in_situ_runs = 0;         // replay only: these tests are about replay and its cache
    return o;
  }

  std::filesystem::path cache_;
  LoadedModel model_;
  std::vector<InputSpec> specs_;
};

TEST_F(OpProfilerTest, ForwardAndBackwardTimesArePositiveAndCached) {
  const Executor ex(model_);
  const auto tensors = make_inputs(specs_, 1);
  const std::vector<c10::IValue> inputs(tensors.begin(), tensors.end());
  const OpProfileResult first = profile_ops(ex, inputs, options(true));
  ASSERT_EQ(first.times.size(), static_cast<size_t>(model_.ir.num_nodes()));
  EXPECT_GT(first.measured, 0);
  int linear_nodes = 0;
  for (const Node& n : model_.ir.nodes()) {
    const NodeTimes& t = first.times[static_cast<size_t>(n.id)];
    EXPECT_GE(t.forward.value(), 0.0) << n.op;
    if (n.op == "aten::linear") {
      ++linear_nodes;
      EXPECT_GT(t.forward.value(), 0.0);
      EXPECT_GT(t.backward.value(), 0.0);  // weights require grad
      EXPECT_LT(t.forward.value(), 0.1);
    }
  }
  EXPECT_EQ(linear_nodes, 3);
  const OpProfileResult second = profile_ops(ex, inputs, options(true));
  EXPECT_EQ(second.measured, 0);
  EXPECT_EQ(second.cache_hits, model_.ir.num_nodes());
  for (size_t i = 0; i < first.times.size(); ++i) {
    EXPECT_DOUBLE_EQ(second.times[i].forward.value(), first.times[i].forward.value());
  }
}

TEST_F(OpProfilerTest, InSituTimesReplaceReplayedOnesAndKeepTheBackwardTotal) {
  const Executor ex(model_);
  const auto tensors = make_inputs(specs_, 1);
  const std::vector<c10::IValue> inputs(tensors.begin(), tensors.end());
  OpProfileOptions o = options(true);
  o.in_situ_runs = 3;
  const OpProfileResult r = profile_ops(ex, inputs, o);
  EXPECT_GT(r.replayed_forward.value(), 0.0);
  EXPECT_GT(r.replayed_backward.value(), 0.0);
  ASSERT_GT(r.in_situ_backward.value(), 0.0);
  double backward = 0;
  for (const Node& n : model_.ir.nodes()) {
    const NodeTimes& t = r.times[static_cast<size_t>(n.id)];
    backward += t.backward.value();
    if (n.op == "aten::linear") {
      EXPECT_GT(t.forward.value(), 0.0);
      EXPECT_GT(t.backward.value(), 0.0);
    }
  }
  // The replayed backward times are scaled so that they add up to the in-situ backward.
  EXPECT_NEAR(backward, r.in_situ_backward.value(), 1e-9 * r.in_situ_backward.value() + 1e-12);
  // The model's parameters are left alone (in-situ backward uses autograd::grad, not .backward()).
  for (const auto& p : model_.parameters) EXPECT_FALSE(p.grad().defined());
}

// Values and .grad of the executor's trainable parameters, for before/after comparisons.
struct TrainableCopy {
  std::vector<torch::Tensor> values;
  std::vector<bool> has_grad;
};

TrainableCopy copy_trainable(const Executor& ex) {
  TrainableCopy c;
  for (const auto& p : ex.parameters()) {
    if (!p.requires_grad()) continue;
    c.values.push_back(p.detach().clone());
    c.has_grad.push_back(p.grad().defined());
  }
  return c;
}

TEST_F(OpProfilerTest, InSituStepRunsTheUpdateOncePerRunAndPutsTheParametersBack) {
  const Executor ex(model_);
  const auto tensors = make_inputs(specs_, 1);
  const std::vector<c10::IValue> inputs(tensors.begin(), tensors.end());
  const TrainableCopy before = copy_trainable(ex);
  OpProfileOptions o = options(true);
  o.in_situ_runs = 4;
  int updates = 0;
  std::vector<bool> between;  // `timed` of every call
  // An update that changes every parameter and drops its gradient, as an optimizer step does.
  o.in_situ_update = [&] {
    ++updates;
    torch::NoGradGuard no_grad;
    for (const auto& p : ex.parameters()) {
      if (!p.requires_grad()) continue;
      ASSERT_TRUE(p.grad().defined());  // backward ran into .grad before the update
      p.add_(p.grad(), -0.5);
      p.mutable_grad().reset();
    }
  };
  o.between_in_situ_runs = [&](bool timed) {
    between.push_back(timed);
    // Every run leaves the parameters as they were.
    const TrainableCopy now = copy_trainable(ex);
    for (size_t i = 0; i < now.values.size(); ++i) EXPECT_TRUE(torch::equal(now.values[i], before.values[i]));
  };
  const OpProfileResult r = profile_ops(ex, inputs, o);
  // Three warm-up runs, then exactly in_situ_runs timed ones (no budget): one update and one call each.
  EXPECT_EQ(updates, 3 + 4);
  EXPECT_EQ(between, (std::vector<bool>{false, false, false, true, true, true, true}));
  EXPECT_GT(r.in_situ_backward.value(), 0.0);
  EXPECT_GT(r.in_situ_loss.value(), 0.0);
  EXPECT_GT(r.in_situ_update.value(), 0.0);
  EXPECT_GE(r.in_situ_forward_outside_nodes.value(), 0.0);
  // Loss and update are parts of their own: the nodes' backward times still add up to the backward alone.
  double backward = 0;
  for (const auto& t : r.times) backward += t.backward.value();
  EXPECT_NEAR(backward, r.in_situ_backward.value(), 1e-9 * r.in_situ_backward.value() + 1e-12);
  const TrainableCopy after = copy_trainable(ex);
  ASSERT_EQ(after.values.size(), before.values.size());
  for (size_t i = 0; i < after.values.size(); ++i) {
    EXPECT_TRUE(torch::equal(after.values[i], before.values[i]));
    EXPECT_EQ(after.has_grad[i], before.has_grad[i]);
  }
}

TEST_F(OpProfilerTest, InSituStepBackpropagatesTheCallersLossOfTheGraphOutputs) {
  const Executor ex(model_);
  const auto tensors = make_inputs(specs_, 1);
  const std::vector<c10::IValue> inputs(tensors.begin(), tensors.end());
  const Graph& g = model_.ir;
  // The gradients of the default loss (the sum of the outputs) and of three times it.
  const auto gradients_of = [&](double scale) {
    OpProfileOptions o = options(true);
    o.in_situ_runs = 1;
    std::vector<torch::Tensor> seen;
    o.in_situ_update = [&] {
      seen.clear();
      for (const auto& p : ex.parameters())
        if (p.requires_grad()) seen.push_back(p.grad().clone());
    };
    int calls = 0;
    if (scale != 1.0) {
      o.in_situ_loss = [&](const std::vector<c10::IValue>& outputs) {
        ++calls;
        EXPECT_EQ(outputs.size(), g.outputs().size());  // the graph's outputs, whole
        EXPECT_TRUE(outputs.at(0).isTensor() && outputs[0].toTensor().requires_grad());
        return outputs[0].toTensor().sum() * scale;
      };
    }
    (void)profile_ops(ex, inputs, o);
    EXPECT_EQ(calls, scale != 1.0 ? 3 + 1 : 0);  // once per run, warm-ups included
    return seen;
  };
  const std::vector<torch::Tensor> sum = gradients_of(1.0);
  const std::vector<torch::Tensor> tripled = gradients_of(3.0);
  ASSERT_EQ(sum.size(), tripled.size());
  ASSERT_FALSE(sum.empty());
  for (size_t i = 0; i < sum.size(); ++i) EXPECT_TRUE(torch::allclose(tripled[i], sum[i] * 3.0, 1e-5, 1e-6));
}

TEST_F(OpProfilerTest, InSituRunsContinueWhileTheBudgetLastsUpToTheMaximum) {
  const Executor ex(model_);
  const auto tensors = make_inputs(specs_, 1);
  const std::vector<c10::IValue> inputs(tensors.begin(), tensors.end());
  OpProfileOptions o = options(false);
  o.in_situ_runs = 2;
  o.in_situ_max_runs = 9;
  o.in_situ_budget = Seconds(3600);  // never spent: the maximum decides
  int timed = 0;
  o.between_in_situ_runs = [&](bool t) { timed += t ? 1 : 0; };
  const OpProfileResult r = profile_ops(ex, inputs, o);
  EXPECT_EQ(timed, 9);
  EXPECT_EQ(r.in_situ_update.value(), 0.0);  // inference: no update, no loss
  EXPECT_EQ(r.in_situ_loss.value(), 0.0);
  o.in_situ_max_runs = 1;  // below in_situ_runs
  EXPECT_THROW(o.validate(), Error);
  o.in_situ_max_runs = 9;
  o.in_situ_budget = Seconds(-1);
  EXPECT_THROW(o.validate(), Error);
}

TEST_F(OpProfilerTest, InferenceHasNoBackwardAndAKeyOfItsOwn) {
  const Executor ex(model_);
  const auto tensors = make_inputs(specs_, 1);
  const std::vector<c10::IValue> inputs(tensors.begin(), tensors.end());
  (void)profile_ops(ex, inputs, options(true));
  const OpProfileResult infer = profile_ops(ex, inputs, options(false));
  EXPECT_GT(infer.measured, 0);  // training entries do not answer inference questions
  for (const auto& t : infer.times) EXPECT_EQ(t.backward.value(), 0.0);
}

// Rewrites every cache entry with `edit`.
template <typename Edit>
void edit_cache(const std::filesystem::path& path, Edit edit) {
  Json j = read_json_file(path.string());
  for (auto& [key, entry] : j["entries"].items()) edit(entry);
  write_json_file(path.string(), j);
}

TEST_F(OpProfilerTest, CacheKeepsSpreadAndAgeAndRemeasuresNoisyOrOldEntries) {
  const Executor ex(model_);
  const auto tensors = make_inputs(specs_, 1);
  const std::vector<c10::IValue> inputs(tensors.begin(), tensors.end());
  OpProfileOptions o = options(false);
  const OpProfileResult first = profile_ops(ex, inputs, o);
  const Json written = read_json_file(cache_.string());
  const int keys = static_cast<int>(written["entries"].size());  // nodes alike (two ReLUs) share one entry
  ASSERT_EQ(first.measured, keys);
  EXPECT_EQ(first.measured + first.cache_hits, model_.ir.num_nodes());
  EXPECT_EQ(written["version"].get<int>(), 3);
  for (const auto& [key, entry] : written["entries"].items()) {
    EXPECT_GE(entry["forward_spread"].get<double>(), 0.0) << key;
    EXPECT_GT(entry["measured_at"].get<double>(), 1e9) << key;
  }
  // Steady and fresh: all from the cache.
  o.max_cached_spread = 0.25;
  o.min_recheck_time = Seconds(0);
  edit_cache(cache_, [](Json& e) { e["forward_spread"] = 0.01; });
  EXPECT_EQ(profile_ops(ex, inputs, o).cache_hits, model_.ir.num_nodes());
  // Noisy entries are measured again, unless their time is too short to matter.
  edit_cache(cache_, [](Json& e) {
    e["forward_spread"] = 0.9;
    e["forward"] = 1e-3;
  });
  const OpProfileResult noisy = profile_ops(ex, inputs, o);
  EXPECT_GE(noisy.remeasured, keys);  // a fresh measurement can be noisy again for the next node alike
  EXPECT_EQ(noisy.measured, noisy.remeasured);
  edit_cache(cache_, [](Json& e) {
    e["forward_spread"] = 0.9;
    e["forward"] = 1e-6;
  });
  o.min_recheck_time = Seconds(1e-4);
  EXPECT_EQ(profile_ops(ex, inputs, o).cache_hits, model_.ir.num_nodes());
  // Old entries and entries without a spread (the first cache format) are measured again.
  edit_cache(cache_, [](Json& e) {
    e["forward_spread"] = 0.0;
    e["measured_at"] = 1000.0;
  });
  o.max_cached_spread = 1e9;  // from here on, only age and format decide
  EXPECT_EQ(profile_ops(ex, inputs, o).remeasured, keys);
  edit_cache(cache_, [](Json& e) { e.erase("forward_spread"); });
  EXPECT_EQ(profile_ops(ex, inputs, o).remeasured, keys);
  // Entries damaged by hand (a field of another type, one missing) are measured again; they were nlohmann's
  // type errors, which ended `plan --cost profiled` as an internal error.
  edit_cache(cache_, [](Json& e) { e["measured_at"] = "yesterday"; });
  EXPECT_EQ(profile_ops(ex, inputs, o).remeasured, keys);
  edit_cache(cache_, [](Json& e) { e.erase("backward"); });
  EXPECT_EQ(profile_ops(ex, inputs, o).remeasured, keys);
  Json whole = read_json_file(cache_.string());
  whole["version"] = "3";  // a cache of another version is left aside whole
  write_json_file(cache_.string(), whole);
  EXPECT_EQ(profile_ops(ex, inputs, o).measured, keys);
  o.max_cached_spread = -1;
  EXPECT_THROW(o.validate(), Error);
}

}  // namespace
}  // namespace partita

#include "partita/torch_bridge/op_profiler.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include "zoo.h"

namespace partita {
namespace {

class OpProfilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ = std::filesystem::temp_directory_path() / ("partita-op-cache-" + std::to_string(getpid()) + ".json");
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

TEST_F(OpProfilerTest, InferenceHasNoBackwardAndAKeyOfItsOwn) {
  const Executor ex(model_);
  const auto tensors = make_inputs(specs_, 1);
  const std::vector<c10::IValue> inputs(tensors.begin(), tensors.end());
  (void)profile_ops(ex, inputs, options(true));
  const OpProfileResult infer = profile_ops(ex, inputs, options(false));
  EXPECT_GT(infer.measured, 0);  // training entries do not answer inference questions
  for (const auto& t : infer.times) EXPECT_EQ(t.backward.value(), 0.0);
}

}  // namespace
}  // namespace partita

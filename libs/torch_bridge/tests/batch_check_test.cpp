#include "partita/torch_bridge/batch_check.h"

#include <gtest/gtest.h>

#include "zoo.h"

namespace partita {

namespace {
BatchCheckResult check(const char* name, const char* input) {
  LoadedModel m = load_model(testing::zoo_model(name));
  const std::vector<InputSpec> specs{parse_input_spec(input)};
  annotate_shapes(m, specs);
  return check_batch_splittability(m, specs);
}
}  // namespace

TEST(BatchCheck, ZooModelsFollowTheBatch) {
  for (const auto& [name, input] :
       {std::pair{"mlp", "4x64"}, {"cnn", "2x3x32x32"}, {"gpt", "2x16:i64:2048"}}) {
    const BatchCheckResult r = check(name, input);
    EXPECT_TRUE(r.splittable()) << name;
    EXPECT_TRUE(r.problems.empty()) << name << ": node " << r.problems[0].node << " " << r.problems[0].detail;
  }
}

TEST(BatchCheck, BakedReshapeIsNamed) {
  const BatchCheckResult r = check("baked_batch", "8x16");
  EXPECT_EQ(r.second_batch, 9);
  EXPECT_FALSE(r.splittable());
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].behavior, BatchBehavior::kMovesBatch);
  EXPECT_NE(r.problems[0].detail.find("[4, 32] at batch 8 vs [4, 36] at 9"), std::string::npos)
      << r.problems[0].detail;
}

// y, _ = lstm(x): the final states, batch in dim 1, are read by nothing; the output the model uses follows.
TEST(BatchCheck, OutputsNothingReadsDoNotCount) {
  const BatchCheckResult r = check("lstm", "4x6x8");
  EXPECT_TRUE(r.splittable());
  EXPECT_TRUE(r.problems.empty()) << "node " << r.problems[0].node << " " << r.problems[0].detail;
}

}  // namespace partita

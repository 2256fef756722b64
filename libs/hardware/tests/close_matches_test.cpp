#include "partita/hardware/close_matches.h"

#include <gtest/gtest.h>

namespace partita {
namespace {

TEST(CloseMatches, EditDistance) {
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3);
  EXPECT_EQ(edit_distance("NVLink", "nvlink"), 0);
  EXPECT_EQ(edit_distance("", "abc"), 3);
}

TEST(CloseMatches, ContainedFirstThenNear) {
  const std::vector<std::string> names = {"H200", "A100 40GB", "A100 80GB", "T4"};
  EXPECT_EQ(close_matches("A100", names), (std::vector<std::string>{"A100 40GB", "A100 80GB"}));
  EXPECT_EQ(close_matches("H201", names), std::vector<std::string>{"H200"});
  EXPECT_TRUE(close_matches("MI300X", names).empty());
  EXPECT_EQ(did_you_mean("T5", names), "; did you mean 'T4'?");
  EXPECT_EQ(did_you_mean("zzz", names), "");
}

}  // namespace
}  // namespace partita

// DistributedGroup's report gathering (the collectives and point-to-point messages are tested through the
// reducer and the stage transport).
#include "partita/runtime/distributed_group.h"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "loopback_ranks.h"
#include "partita/core/error.h"

namespace partita {
namespace {

using testing::env_for;
using testing::run_ranks;

TEST(DistributedGroup, RankZeroGathersEveryRanksTextInRankOrder) {
  std::mutex mutex;
  std::vector<std::vector<std::string>> got(3);
  run_ranks(3, [&](int rank, int port) {
    DistributedGroup group(env_for(rank, 3, port));
    // Texts of different sizes, one with a NUL and a newline: the store keeps bytes.
    std::string text(static_cast<size_t>(1000 * rank + 1), 'x');
    text[0] = static_cast<char>('0' + rank);
    if (rank == 2) text += std::string("\0\nend", 5);
    auto gathered = group.gather_to_rank0("report", text);
    {
      std::lock_guard<std::mutex> lock(mutex);
      got[static_cast<size_t>(rank)] = std::move(gathered);
    }
    group.barrier("the end of the test");
  });
  ASSERT_EQ(got[0].size(), 3u);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(got[0][static_cast<size_t>(r)][0], '0' + r);
  EXPECT_EQ(got[0][1].size(), 1001u);
  EXPECT_EQ(got[0][2].substr(2001), std::string("\0\nend", 5));
  EXPECT_TRUE(got[1].empty());
  EXPECT_TRUE(got[2].empty());
}

TEST(DistributedGroup, ARankThatNeverPostsIsNamedWithinTheTimeout) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string message;
  run_ranks(2, [&](int rank, int port) {
    DistributedGroup group(env_for(rank, 2, port, 2));
    if (rank == 1) {  // joins, then never posts
      std::this_thread::sleep_for(std::chrono::seconds(3));
      return;
    }
    try {
      group.gather_to_rank0("report", "mine");
    } catch (const Error& e) {
      message = e.what();
    }
  });
  EXPECT_NE(message.find("gathering report: rank 1 died or stalled"), std::string::npos) << message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
}

}  // namespace
}  // namespace partita

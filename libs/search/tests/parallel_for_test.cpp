// The search library's internal parallel_for (src/parallel_for.h).
#include "../src/parallel_for.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace partita::detail {
namespace {

TEST(ParallelFor, RunsEveryIndexOnce) {
  std::vector<std::atomic<int>> runs(1000);
  parallel_for(runs.size(), [&](size_t i) { ++runs[i]; });
  for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(runs[i].load(), 1) << i;
  parallel_for(0, [](size_t) { FAIL() << "no index to run"; });
}

TEST(ParallelFor, RethrowsTheFirstErrorAfterEveryIndexRan) {
  std::atomic<int> ran{0};
  EXPECT_THROW(parallel_for(64,
                            [&](size_t i) {
                              ++ran;
                              if (i % 8 == 3) throw std::runtime_error("index " + std::to_string(i));
                            }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 64);
}

// A call from inside a body runs serially on the body's thread (the outer call already has the cores).
TEST(ParallelFor, NestedCallsRunOnTheCallingThread) {
  std::atomic<int> elsewhere{0}, inner{0};
  parallel_for(4, [&](size_t) {
    const std::thread::id outer = std::this_thread::get_id();
    parallel_for(16, [&](size_t) {
      ++inner;
      if (std::this_thread::get_id() != outer) ++elsewhere;
    });
  });
  EXPECT_EQ(inner.load(), 64);
  EXPECT_EQ(elsewhere.load(), 0);
}

}  // namespace
}  // namespace partita::detail

#include "partita/core/process_memory.h"

#include <cstdlib>
#include <cstring>

#include <sys/resource.h>

#include <gtest/gtest.h>

namespace partita {
namespace {

long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Allocates, touches and frees `bytes` the way a step's tensors come and go.
void cycle(size_t bytes) {
  char* p = static_cast<char*>(std::malloc(bytes));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, bytes);
  volatile char sink = p[bytes / 2];
  (void)sink;
  std::free(p);
}

TEST(ProcessMemory, FreedBlocksAreReusedWithoutPageFaults) {
  const ProcessMemoryPolicy policy = keep_freed_memory_in_process();
#if defined(__GLIBC__)
  ASSERT_TRUE(policy.applied) << policy.why;
  constexpr size_t kBlock = 24 << 20;  // 6,144 pages of 4 KiB
  cycle(kBlock);                       // first touch faults, once
  const long before = minor_faults();
  for (int i = 0; i < 5; ++i) cycle(kBlock);
  // With glibc's defaults each cycle maps and faults the block again (about 6,000 faults per cycle).
  EXPECT_LT(minor_faults() - before, 1000);
#else
  EXPECT_FALSE(policy.applied);
#endif
}

}  // namespace
}  // namespace partita

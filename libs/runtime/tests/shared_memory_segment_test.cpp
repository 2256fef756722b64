#include "../src/shared_memory_segment.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace partita::detail {
namespace {

constexpr uint64_t kMagic = 0x7465'7374'7365'6731;  // "testseg1"

// Kilobytes of the mapping that starts at `base` which this process has in its page tables (smaps' Rss);
// -1 when no mapping starts there.
long resident_kb(const void* base) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_mapping = false;
  const auto start = reinterpret_cast<uintptr_t>(base);
  while (std::getline(smaps, line)) {
    const size_t dash = line.find('-');
    const size_t space = line.find(' ');
    if (dash != std::string::npos && space != std::string::npos && dash < space &&
        line.find_first_not_of("0123456789abcdef") == dash) {
      in_mapping = std::stoull(line.substr(0, dash), nullptr, 16) == start;
      continue;
    }
    if (in_mapping && line.rfind("Rss:", 0) == 0) {
      std::istringstream fields(line.substr(4));
      long kb = -1;
      fields >> kb;
      return kb;
    }
  }
  return -1;
}

// A segment's pages are mapped when it is made and when it is joined, not one fault at a time on the first
// pass through a ring (which made a first 64 KiB message 7x slower).
TEST(SharedSegment, EveryPageIsMappedWhenMadeAndWhenJoined) {
  constexpr size_t kBytes = size_t{4} << 20;
  std::string why;
  auto made = SharedSegment::create(kMagic, 2, 64, kBytes, why);
  ASSERT_TRUE(made) << why;
  auto joined = SharedSegment::join(
      kMagic, made->name(), made->header().token, 1, [](const SegmentHeader&) { return kBytes; }, why);
  ASSERT_TRUE(joined) << why;
  made->unlink();
  for (const SharedSegment* s : {made.get(), joined.get()}) {
    const long kb = resident_kb(s->at(0));
    ASSERT_GE(kb, 0) << "no mapping found at the segment's address";
    EXPECT_GE(kb, static_cast<long>(kBytes / 1024))
        << "only " << kb << " kB of " << kBytes / 1024 << " mapped";
  }
}

}  // namespace
}  // namespace partita::detail

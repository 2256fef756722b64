// The shared-memory exchange between the processes of one host: chunks in rounds, members lost by leaving,
// exiting or stalling, mismatched byte counts, and segments that are not this job's.
#include "../src/shared_memory_exchange.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <thread>
#include <vector>

#include "partita/core/error.h"

namespace partita::detail {
namespace {

using std::chrono::steady_clock;

struct Members {
  std::vector<std::unique_ptr<SharedMemoryExchange>> all;
};

Members make_members(int n, size_t slot_bytes) {
  Members m;
  std::string why;
  m.all.push_back(SharedMemoryExchange::create(n, slot_bytes, why));
  EXPECT_NE(m.all[0], nullptr) << why;
  for (int k = 1; k < n; ++k) {
    m.all.push_back(SharedMemoryExchange::join(m.all[0]->name(), m.all[0]->token(), k, why));
    EXPECT_NE(m.all.back(), nullptr) << why;
  }
  m.all[0]->unlink();
  return m;
}

std::vector<uint8_t> pattern(int member, size_t bytes, int exchange) {
  std::vector<uint8_t> v(bytes);
  for (size_t i = 0; i < bytes; ++i)
    v[i] = static_cast<uint8_t>(i * 7 + static_cast<size_t>(member) * 31 + exchange);
  return v;
}

// Three members, slots of 64 bytes: exchanges of 0, 1, 64, 1000 and 65 bytes (0 to 16 rounds) give every
// member every member's bytes, in order, with the rounds' offsets and lengths.
TEST(SharedMemoryExchange, EveryMemberGetsEveryMembersBytesInRoundsOfASlot) {
  const int n = 3;
  Members m = make_members(n, 64);
  const std::vector<size_t> sizes{0, 1, 64, 1000, 65};
  std::vector<std::vector<std::vector<std::vector<uint8_t>>>> got(
      n, std::vector<std::vector<std::vector<uint8_t>>>(sizes.size(), std::vector<std::vector<uint8_t>>(n)));
  std::vector<std::vector<int>> rounds(n, std::vector<int>(sizes.size(), 0));
  std::vector<std::thread> threads;
  for (int me = 0; me < n; ++me) {
    threads.emplace_back([&, me] {
      for (size_t e = 0; e < sizes.size(); ++e) {
        const auto mine = pattern(me, sizes[e], static_cast<int>(e));
        m.all[static_cast<size_t>(me)]->exchange(
            mine.data(), mine.size(), steady_clock::now() + std::chrono::seconds(10),
            [&](size_t offset, size_t length, const std::vector<const uint8_t*>& chunks) {
              ++rounds[me][e];
              EXPECT_EQ(offset, static_cast<size_t>(rounds[me][e] - 1) * 64);
              EXPECT_LE(length, 64u);
              for (int k = 0; k < n; ++k)
                got[me][e][k].insert(got[me][e][k].end(), chunks[k], chunks[k] + length);
            });
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int me = 0; me < n; ++me) {
    for (size_t e = 0; e < sizes.size(); ++e) {
      EXPECT_EQ(rounds[me][e], sizes[e] == 0 ? 1 : static_cast<int>((sizes[e] + 63) / 64));
      for (int k = 0; k < n; ++k)
        EXPECT_EQ(got[me][e][k], pattern(k, sizes[e], static_cast<int>(e))) << me << e << k;
    }
  }
}

// A member's bytes handed in as pieces (a header, then a tensor's bytes) arrive as if they were one buffer,
// whatever the pieces' boundaries against the rounds': here pieces of 5, 100, 0 and 37 bytes through slots
// of 64 (boundaries inside rounds 1 and 2, a piece across two rounds, an empty piece).
TEST(SharedMemoryExchange, PiecesArriveAsOneBuffer) {
  const int n = 2;
  Members m = make_members(n, 64);
  const std::vector<size_t> lengths{5, 100, 0, 37};
  std::vector<std::vector<uint8_t>> got(n * n);
  std::vector<std::thread> threads;
  for (int me = 0; me < n; ++me) {
    threads.emplace_back([&, me] {
      const auto whole = pattern(me, 142, 0);
      std::vector<SharedMemoryExchange::Piece> pieces;
      size_t at = 0;
      for (size_t l : lengths) {
        pieces.push_back({whole.data() + at, l});
        at += l;
      }
      m.all[static_cast<size_t>(me)]->exchange(
          pieces, steady_clock::now() + std::chrono::seconds(10),
          [&](size_t, size_t length, const std::vector<const uint8_t*>& chunks) {
            for (int k = 0; k < n; ++k) {
              auto& into = got[static_cast<size_t>(me * n + k)];
              into.insert(into.end(), chunks[static_cast<size_t>(k)],
                          chunks[static_cast<size_t>(k)] + length);
            }
          });
    });
  }
  for (auto& t : threads) t.join();
  for (int me = 0; me < n; ++me)
    for (int k = 0; k < n; ++k)
      EXPECT_EQ(got[static_cast<size_t>(me * n + k)], pattern(k, 142, 0)) << me << k;
}

// The caller may overwrite its input while consuming (an in-place all-reduce): its own chunk comes from the
// slot.
TEST(SharedMemoryExchange, AMemberMayOverwriteItsInputWhileConsuming) {
  Members m = make_members(2, 64);
  std::vector<std::vector<int32_t>> data(2, std::vector<int32_t>(100));
  for (int k = 0; k < 2; ++k) std::iota(data[k].begin(), data[k].end(), 1000 * k);
  std::vector<std::thread> threads;
  for (int me = 0; me < 2; ++me) {
    threads.emplace_back([&, me] {
      auto& mine = data[static_cast<size_t>(me)];
      m.all[static_cast<size_t>(me)]->exchange(
          mine.data(), mine.size() * 4, steady_clock::now() + std::chrono::seconds(10),
          [&](size_t offset, size_t length, const std::vector<const uint8_t*>& chunks) {
            for (size_t i = 0; i < length / 4; ++i) {
              int32_t a = 0, b = 0;
              std::memcpy(&a, chunks[0] + 4 * i, 4);
              std::memcpy(&b, chunks[1] + 4 * i, 4);
              mine[offset / 4 + i] = a + b;
            }
          });
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < 100; ++i) {
    EXPECT_EQ(data[0][i], static_cast<int32_t>(1000 + 2 * i));
    EXPECT_EQ(data[1][i], data[0][i]);
  }
}

TEST(SharedMemoryExchange, AMemberThatLeftIsNamedAtOnce) {
  Members m = make_members(2, 64);
  m.all[1].reset();  // left (its thread failed)
  const auto t0 = steady_clock::now();
  uint8_t byte = 1;
  try {
    m.all[0]->exchange(&byte, 1, steady_clock::now() + std::chrono::seconds(20),
                       [](size_t, size_t, const std::vector<const uint8_t*>&) {});
    FAIL() << "no error";
  } catch (const PeerLost& lost) {
    EXPECT_EQ(lost.member, 1);
    EXPECT_STREQ(lost.what(), "it left the exchange");
  }
  EXPECT_LT(steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST(SharedMemoryExchange, AStalledMemberIsNamedWhenTheDeadlinePasses) {
  Members m = make_members(2, 64);
  const auto t0 = steady_clock::now();
  uint8_t byte = 1;
  try {
    m.all[0]->exchange(&byte, 1, steady_clock::now() + std::chrono::milliseconds(300),
                       [](size_t, size_t, const std::vector<const uint8_t*>&) {});
    FAIL() << "no error";
  } catch (const PeerLost& lost) {
    EXPECT_EQ(lost.member, 1);
    EXPECT_STREQ(lost.what(), "it did not arrive before the timeout");
  }
  const auto waited = steady_clock::now() - t0;
  EXPECT_GE(waited, std::chrono::milliseconds(300));
  EXPECT_LT(waited, std::chrono::seconds(3));
}

// A member in another process that exits without leaving (killed, _exit) is named within the liveness
// period, also while it is a zombie its parent has not reaped yet.
TEST(SharedMemoryExchange, AMemberWhoseProcessExitedIsNamedWithoutWaitingForTheTimeout) {
  std::string why;
  auto leader = SharedMemoryExchange::create(2, 64, why);
  ASSERT_NE(leader, nullptr) << why;
  const std::string name = leader->name();
  const uint64_t token = leader->token();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::string child_why;
    auto member = SharedMemoryExchange::join(name, token, 1, child_why);
    if (!member) _exit(2);
    uint8_t byte = 7;
    uint8_t seen = 0;
    member->exchange(&byte, 1, steady_clock::now() + std::chrono::seconds(10),
                     [&](size_t, size_t, const std::vector<const uint8_t*>& chunks) { seen = *chunks[0]; });
    _exit(seen == 5 ? 0 : 3);  // without leaving: the segment still says it is a member
  }
  uint8_t byte = 5;
  uint8_t seen = 0;
  leader->exchange(&byte, 1, steady_clock::now() + std::chrono::seconds(10),
                   [&](size_t, size_t, const std::vector<const uint8_t*>& chunks) { seen = *chunks[1]; });
  EXPECT_EQ(seen, 7);
  const auto t0 = steady_clock::now();
  try {
    leader->exchange(&byte, 1, steady_clock::now() + std::chrono::seconds(20),
                     [](size_t, size_t, const std::vector<const uint8_t*>&) {});
    ADD_FAILURE() << "no error";
  } catch (const PeerLost& lost) {
    EXPECT_EQ(lost.member, 1);
    EXPECT_EQ(std::string(lost.what()), "its process " + std::to_string(child) + " exited");
  }
  EXPECT_LT(steady_clock::now() - t0, std::chrono::seconds(2));
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);  // reaped only now: it was a zombie while the leader waited
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(SharedMemoryExchange, DifferentByteCountsAreAnErrorNamingBoth) {
  Members m = make_members(2, 64);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int me = 0; me < 2; ++me) {
    threads.emplace_back([&, me] {
      std::vector<uint8_t> mine(me == 0 ? 10 : 12);
      try {
        m.all[static_cast<size_t>(me)]->exchange(mine.data(), mine.size(),
                                                 steady_clock::now() + std::chrono::seconds(10),
                                                 [](size_t, size_t, const std::vector<const uint8_t*>&) {});
      } catch (const Error& e) {
        errors[static_cast<size_t>(me)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_NE(errors[0].find("member 1 handed in 12 bytes, member 0 10"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("member 0 handed in 10 bytes, member 1 12"), std::string::npos) << errors[1];
}

TEST(SharedMemoryExchange, OnlyTheJobsOwnSegmentIsJoinedAndNoNameIsLeftBehind) {
  std::string why;
  auto leader = SharedMemoryExchange::create(2, 64, why);
  ASSERT_NE(leader, nullptr) << why;
  const std::string path = "/dev/shm" + leader->name();
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(SharedMemoryExchange::join(leader->name(), leader->token() + 1, 1, why), nullptr);
  EXPECT_NE(why.find("is not the segment this job made"), std::string::npos) << why;
  EXPECT_EQ(SharedMemoryExchange::join(leader->name(), leader->token(), 2, why), nullptr);  // no member 2
  EXPECT_EQ(SharedMemoryExchange::join("/partita-no-such-segment", 1, 1, why), nullptr);
  EXPECT_NE(why.find("cannot open /partita-no-such-segment"), std::string::npos) << why;
  leader.reset();  // member 0 unlinks on leaving when setup did not
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace partita::detail

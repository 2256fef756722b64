// The shared-memory mailbox between the processes of one host: messages streamed through rings smaller than
// them, tags matched out of order, sends that never wait for the receiver, members lost by leaving, exiting
// or stalling, wrong lengths, and segments that are not this job's.
#include "../src/shared_memory_mailbox.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "partita/core/error.h"

namespace partita::detail {
namespace {

using std::chrono::steady_clock;

std::vector<std::unique_ptr<SharedMemoryMailbox>> make_members(int n, size_t ring_bytes) {
  std::vector<std::unique_ptr<SharedMemoryMailbox>> all;
  std::string why;
  all.push_back(SharedMemoryMailbox::create(n, ring_bytes, why));
  EXPECT_NE(all[0], nullptr) << why;
  for (int k = 1; k < n; ++k) {
    all.push_back(SharedMemoryMailbox::join(all[0]->name(), all[0]->token(), k, why));
    EXPECT_NE(all.back(), nullptr) << why;
  }
  all[0]->unlink();
  return all;
}

std::vector<uint8_t> pattern(int from, int to, size_t bytes, int64_t tag) {
  std::vector<uint8_t> v(bytes);
  for (size_t i = 0; i < bytes; ++i) v[i] = static_cast<uint8_t>(i * 13 + from * 31 + to * 7 + tag);
  return v;
}

steady_clock::time_point in_seconds(int s) { return steady_clock::now() + std::chrono::seconds(s); }

// Three members, rings of 64 bytes: every member sends every other one messages of 0 to 1000 bytes (up to 16
// times a ring) under tags 0..4, and receives them in another tag order than they were sent; each arrives
// whole. Every message longer than the ring waits for the receiver, so the sends' own thread writes it.
TEST(SharedMemoryMailbox, MessagesLongerThanTheRingArriveWholeInAnyTagOrder) {
  const int n = 3;
  auto m = make_members(n, 64);
  const std::vector<size_t> sizes{0, 1, 48, 1000, 65};  // tag k has sizes[k] bytes
  const std::vector<int64_t> receive_order{3, 0, 4, 1, 2};
  std::vector<std::thread> threads;
  std::vector<std::string> errors(n);
  for (int me = 0; me < n; ++me) {
    threads.emplace_back([&, me] {
      try {
        for (int64_t tag = 0; tag < static_cast<int64_t>(sizes.size()); ++tag) {
          for (int to = 0; to < n; ++to) {
            if (to == me) continue;
            const auto bytes = pattern(me, to, sizes[static_cast<size_t>(tag)], tag);
            m[static_cast<size_t>(me)]->send(to, tag, bytes.data(), bytes.size());  // copied when it waits
          }
        }
        for (int64_t tag : receive_order) {
          for (int from = 0; from < n; ++from) {
            if (from == me) continue;
            std::vector<uint8_t> got(sizes[static_cast<size_t>(tag)], 0xEE);
            m[static_cast<size_t>(me)]->receive(from, tag, got.data(), got.size(), in_seconds(10));
            EXPECT_EQ(got, pattern(from, me, got.size(), tag)) << from << " -> " << me << " tag " << tag;
          }
        }
        m[static_cast<size_t>(me)]->wait_delivered(in_seconds(10));
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(me)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int me = 0; me < n; ++me) EXPECT_EQ(errors[static_cast<size_t>(me)], "") << "member " << me;
}

// Messages with equal tags are matched in the order they were sent.
TEST(SharedMemoryMailbox, EqualTagsMatchInOrder) {
  auto m = make_members(2, 256);
  for (uint8_t k = 0; k < 5; ++k) {
    const std::vector<uint8_t> one{k, static_cast<uint8_t>(k + 1)};
    m[0]->send(1, /*tag=*/k % 2, one.data(), one.size());
  }
  for (uint8_t want : {1, 3, 0, 2, 4}) {
    std::vector<uint8_t> got(2);
    m[1]->receive(0, want % 2, got.data(), 2, in_seconds(10));
    EXPECT_EQ(got[0], want);
  }
  m[0]->wait_delivered(in_seconds(10));
}

// Both members send the other more than a ring holds before either receives: over blocking sends this
// would deadlock; here both return at once and the bytes pass as the receivers read. The caller's buffer
// given with `keep` is written from in place.
TEST(SharedMemoryMailbox, SendsReturnBeforeTheReceiverReads) {
  auto m = make_members(2, 4096);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int me = 0; me < 2; ++me) {
    threads.emplace_back([&, me] {
      try {
        const int peer = 1 - me;
        auto big = std::make_shared<std::vector<uint8_t>>(pattern(me, peer, 100000, 9));
        const auto t0 = steady_clock::now();
        m[static_cast<size_t>(me)]->send(peer, 9, big->data(), big->size(), big);
        EXPECT_LT(steady_clock::now() - t0, std::chrono::seconds(1));
        big.reset();  // the mailbox holds it
        std::vector<uint8_t> got(100000);
        m[static_cast<size_t>(me)]->receive(peer, 9, got.data(), got.size(), in_seconds(10));
        EXPECT_EQ(got, pattern(peer, me, got.size(), 9));
        m[static_cast<size_t>(me)]->wait_delivered(in_seconds(10));
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(me)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

// wait_delivered() returns only once the receiver has read everything.
TEST(SharedMemoryMailbox, WaitDeliveredWaitsForTheReceiver) {
  auto m = make_members(2, 1024);
  const auto bytes = pattern(0, 1, 100, 1);
  m[0]->send(1, 1, bytes.data(), bytes.size());
  try {
    m[0]->wait_delivered(steady_clock::now() + std::chrono::milliseconds(200));
    FAIL() << "delivered before a receive";
  } catch (const PeerLost& lost) {
    EXPECT_EQ(lost.member, 1);
    EXPECT_STREQ(lost.what(), "it did not arrive before the timeout");
  }
  std::vector<uint8_t> got(100);
  m[1]->receive(0, 1, got.data(), got.size(), in_seconds(10));
  m[0]->wait_delivered(in_seconds(10));
  EXPECT_EQ(got, bytes);
}

TEST(SharedMemoryMailbox, AMemberThatLeftIsNamedAtOnceButWhatItSentIsDelivered) {
  auto m = make_members(2, 1024);
  const auto bytes = pattern(1, 0, 10, 4);
  m[1]->send(0, 4, bytes.data(), bytes.size());
  const auto big = pattern(0, 1, 5000, 6);
  m[0]->send(1, 6, big.data(), big.size());  // more than the ring: the rest waits for the mailbox's thread
  m[1].reset();                              // left (its thread failed) after sending
  std::vector<uint8_t> got(10);
  m[0]->receive(1, 4, got.data(), got.size(), in_seconds(20));
  EXPECT_EQ(got, bytes);
  const auto t0 = steady_clock::now();
  try {
    m[0]->receive(1, 5, got.data(), got.size(), in_seconds(20));
    FAIL() << "no error";
  } catch (const PeerLost& lost) {
    EXPECT_EQ(lost.member, 1);
    EXPECT_STREQ(lost.what(), "it left the exchange");
  }
  try {
    m[0]->wait_delivered(in_seconds(20));
    FAIL() << "no error";
  } catch (const PeerLost& lost) {
    EXPECT_EQ(lost.member, 1);
    EXPECT_STREQ(lost.what(), "it left the exchange");
  }
  EXPECT_THROW(m[0]->send(1, 7, big.data(), big.size()), PeerLost);
  EXPECT_LT(steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST(SharedMemoryMailbox, AStalledSenderIsNamedWhenTheDeadlinePasses) {
  auto m = make_members(2, 1024);
  const auto t0 = steady_clock::now();
  uint8_t byte = 0;
  try {
    m[0]->receive(1, 0, &byte, 1, steady_clock::now() + std::chrono::milliseconds(300));
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
// period, while it is still an unreaped zombie: by a receive that waits for it, and by the mailbox's thread
// that waits to write it the rest of a long message.
TEST(SharedMemoryMailbox, AMemberWhoseProcessExitedIsNamedWithoutWaitingForTheTimeout) {
  std::string why;
  auto leader = SharedMemoryMailbox::create(2, 4096, why);
  ASSERT_NE(leader, nullptr) << why;
  const std::string name = leader->name();
  const uint64_t token = leader->token();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::string child_why;
    auto member = SharedMemoryMailbox::join(name, token, 1, child_why);
    if (!member) _exit(2);
    uint8_t byte = 0;
    member->receive(0, 1, &byte, 1, steady_clock::now() + std::chrono::seconds(10));
    member->send(0, 2, &byte, 1);
    member->wait_delivered(steady_clock::now() + std::chrono::seconds(10));
    _exit(byte == 5 ? 0 : 3);  // without leaving: the segment still says it is a member
  }
  uint8_t byte = 5;
  leader->send(1, 1, &byte, 1);
  uint8_t back = 0;
  leader->receive(1, 2, &back, 1, in_seconds(10));
  EXPECT_EQ(back, 5);
  const auto t0 = steady_clock::now();
  try {
    leader->receive(1, 3, &back, 1, in_seconds(20));
    ADD_FAILURE() << "no error";
  } catch (const PeerLost& lost) {
    EXPECT_EQ(lost.member, 1);
    EXPECT_EQ(std::string(lost.what()), "its process " + std::to_string(child) + " exited");
  }
  const auto big = pattern(0, 1, 10000, 4);  // more than the ring: the mailbox's thread waits to write it
  leader->send(1, 4, big.data(), big.size());
  try {
    leader->wait_delivered(in_seconds(20));
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

TEST(SharedMemoryMailbox, AMessageOfAnotherLengthIsAnErrorAndTheStreamStaysBroken) {
  auto m = make_members(2, 1024);
  const auto bytes = pattern(0, 1, 10, 0);
  m[0]->send(1, 0, bytes.data(), bytes.size());
  m[0]->send(1, 1, bytes.data(), bytes.size());
  std::vector<uint8_t> got(12);
  try {
    m[1]->receive(0, 0, got.data(), got.size(), in_seconds(10));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a message from member 0 with tag 0 has 10 bytes where 12 were "
                                         "expected"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(m[1]->receive(0, 1, got.data(), 10, in_seconds(10)), PeerLost);
}

TEST(SharedMemoryMailbox, OnlyTheJobsOwnSegmentIsJoinedAndNoNameIsLeftBehind) {
  std::string why;
  auto leader = SharedMemoryMailbox::create(3, 4096, why);
  ASSERT_NE(leader, nullptr) << why;
  const std::string path = "/dev/shm" + leader->name();
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(SharedMemoryMailbox::join(leader->name(), leader->token() + 1, 1, why), nullptr);
  EXPECT_NE(why.find("is not the segment this job made"), std::string::npos) << why;
  EXPECT_EQ(SharedMemoryMailbox::join(leader->name(), leader->token(), 3, why), nullptr);  // no member 3
  EXPECT_NE(SharedMemoryMailbox::join(leader->name(), leader->token(), 2, why), nullptr) << why;
  leader.reset();  // member 0 unlinks on leaving when setup did not
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(SharedMemoryMailbox::default_ring_bytes(2), size_t{4} << 20);
  EXPECT_EQ(SharedMemoryMailbox::default_ring_bytes(64), size_t{256} << 10);
}

}  // namespace
}  // namespace partita::detail

// DistributedGroup's report gathering, clock offsets and subgroups (the collectives and point-to-point
// messages are tested through the reducer and the stage transport).
#include "partita/runtime/distributed_group.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
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

// Rank 0's text reaches every rank, whatever the others pass; two keys are two messages.
TEST(DistributedGroup, EveryRankGetsRankZerosBroadcast) {
  std::mutex mutex;
  std::vector<std::string> first(3), second(3);
  run_ranks(3, [&](int rank, int port) {
    DistributedGroup group(env_for(rank, 3, port));
    std::string a =
        group.broadcast_from_rank0("decision/1", rank == 0 ? std::string("keep\0x", 6) : "ignored");
    std::string b = group.broadcast_from_rank0("decision/2", "from " + std::to_string(rank));
    {
      std::lock_guard<std::mutex> lock(mutex);
      first[static_cast<size_t>(rank)] = std::move(a);
      second[static_cast<size_t>(rank)] = std::move(b);
    }
    group.barrier("the end of the test");
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(first[static_cast<size_t>(r)], std::string("keep\0x", 6)) << "rank " << r;
    EXPECT_EQ(second[static_cast<size_t>(r)], "from 0") << "rank " << r;
  }
}

// A rank 0 that never broadcasts is named within the timeout.
TEST(DistributedGroup, ABroadcastThatNeverComesNamesRankZero) {
  std::string message;
  run_ranks(2, [&](int rank, int port) {
    DistributedGroup group(env_for(rank, 2, port, 2));
    if (rank == 0) {  // joins, then never posts
      std::this_thread::sleep_for(std::chrono::seconds(3));
      return;
    }
    try {
      group.broadcast_from_rank0("decision", "");
    } catch (const Error& e) {
      message = e.what();
    }
  });
  EXPECT_NE(message.find("receiving decision from rank 0: rank 0 died or stalled"), std::string::npos)
      << message;
}

// Subgroups: ranks {0, 1} and {2, 3} gather among themselves only, in subgroup order; a second subgroup
// over the same ranks is a group of its own.
TEST(DistributedGroup, SubgroupsGatherAmongTheirMembersOnly) {
  std::mutex mutex;
  std::vector<std::vector<torch::Tensor>> got(4), again(4);
  run_ranks(4, [&](int rank, int port) {
    DistributedGroup group(env_for(rank, 4, port));
    const std::vector<int> members = rank < 2 ? std::vector<int>{0, 1} : std::vector<int>{2, 3};
    const int first = group.add_subgroup(members);
    const int second = group.add_subgroup(members);
    EXPECT_NE(first, second);
    auto mine = group.all_gather(first, torch::full({3}, static_cast<float>(10 * rank)), 0, "a test gather");
    auto more = group.all_gather(second, torch::full({1}, static_cast<int64_t>(rank)), 0, "a test gather");
    {
      std::lock_guard<std::mutex> lock(mutex);
      got[static_cast<size_t>(rank)] = std::move(mine);
      again[static_cast<size_t>(rank)] = std::move(more);
    }
    group.barrier("the end of the test");
  });
  for (int rank = 0; rank < 4; ++rank) {
    const int base = rank < 2 ? 0 : 2;
    ASSERT_EQ(got[static_cast<size_t>(rank)].size(), 2u);
    for (int k = 0; k < 2; ++k) {
      EXPECT_TRUE(torch::equal(got[static_cast<size_t>(rank)][static_cast<size_t>(k)],
                               torch::full({3}, static_cast<float>(10 * (base + k)))))
          << "rank " << rank << " member " << k;
      EXPECT_EQ(again[static_cast<size_t>(rank)][static_cast<size_t>(k)].item<int64_t>(), base + k);
    }
  }
}

// Ranks of one host sum and gather through shared memory, PARTITA_SHARED_MEMORY=0 through Gloo: the same
// results on every rank, also for tensors larger than a slot (3 rounds) and several dtypes.
TEST(DistributedGroup, RanksOfOneHostSumAndGatherThroughSharedMemoryAsThroughGloo) {
  for (bool shared : {true, false}) {
    std::mutex mutex;
    std::vector<std::vector<torch::Tensor>> sums(3), gathered(3);
    run_ranks(3, [&](int rank, int port) {
      DistributedEnv e = env_for(rank, 3, port);
      e.shared_memory = shared;
      DistributedGroup group(e);
      EXPECT_EQ(group.shares_memory(), shared);
      const int sub = rank == 1 ? -1 : group.add_subgroup({0, 2});
      if (sub >= 0) {
        EXPECT_EQ(group.subgroup_shares_memory(sub), shared);
      }
      // 5 MiB of floats: whole numbers, so every order of summing gives the same bits.
      std::vector<torch::Tensor> t{torch::arange(1310720, torch::kFloat32).fmod(1000) * (rank + 1),
                                   torch::full({3}, 0.1 * rank, torch::kFloat64),
                                   torch::full({5}, int64_t{1} << (10 * rank), torch::kInt64)};
      group.allreduce_sum(t, 0, "a test sum");
      std::vector<torch::Tensor> g;
      if (sub >= 0)
        g = group.all_gather(sub, torch::full({700000}, static_cast<int32_t>(rank), torch::kInt32), 0,
                             "a test gather");
      {
        std::lock_guard<std::mutex> lock(mutex);
        sums[static_cast<size_t>(rank)] = t;
        gathered[static_cast<size_t>(rank)] = g;
      }
      group.barrier("the end of the test");
    });
    for (int rank = 0; rank < 3; ++rank) {
      const auto& t = sums[static_cast<size_t>(rank)];
      EXPECT_TRUE(torch::equal(t[0], torch::arange(1310720, torch::kFloat32).fmod(1000) * 6)) << rank;
      EXPECT_TRUE(torch::equal(t[1], sums[0][1])) << rank;  // the same bits everywhere
      EXPECT_NEAR(t[1][0].item<double>(), 0.3, 1e-15);
      EXPECT_EQ(t[2][4].item<int64_t>(), 1 + (1 << 10) + (1 << 20));
      if (rank == 1) continue;
      ASSERT_EQ(gathered[static_cast<size_t>(rank)].size(), 2u);
      EXPECT_TRUE(torch::equal(gathered[static_cast<size_t>(rank)][1],
                               torch::full({700000}, int32_t{2}, torch::kInt32)));
      EXPECT_TRUE(
          torch::equal(gathered[static_cast<size_t>(rank)][0], torch::zeros({700000}, torch::kInt32)));
    }
  }
}

// A tagged gather (the tensor-parallel link's) hands back every member's tag and tensor, in member order,
// with the tensor's shape and dtype: through shared memory, where tag and bytes go into the slot as two
// pieces (here over three rounds of a slot, and with 16-byte elements, a transposed input and no elements),
// as through Gloo, where they are packed into one message.
TEST(DistributedGroup, TaggedGathersGiveEveryMembersTagAndTensorThroughSharedMemoryAsThroughGloo) {
  for (bool shared : {true, false}) {
    std::mutex mutex;
    std::vector<std::vector<std::vector<torch::Tensor>>> got(2);
    std::vector<std::vector<std::vector<uint64_t>>> tags(2);
    run_ranks(2, [&](int rank, int port) {
      DistributedEnv e = env_for(rank, 2, port);
      e.shared_memory = shared;
      DistributedGroup group(e);
      const int sub = group.add_subgroup({0, 1});
      ASSERT_EQ(group.subgroup_shares_memory(sub), shared);
      const uint64_t tag = 0x0123456789abcdefULL + static_cast<uint64_t>(rank);
      // 4.8 MB of float64 (a slot is 2 MiB), transposed: not contiguous.
      const std::vector<torch::Tensor> inputs{
          (torch::arange(600000, torch::kFloat64).view({300000, 2}) + 1e6 * rank).t(),
          torch::full({3}, c10::complex<double>(rank, -rank), torch::kComplexDouble),
          torch::empty({0, 4}, torch::kInt16)};
      std::vector<std::vector<torch::Tensor>> mine;
      std::vector<std::vector<uint64_t>> my_tags;
      for (const torch::Tensor& in : inputs) {
        my_tags.emplace_back();
        mine.push_back(group.all_gather_tagged(sub, tag, in, my_tags.back(), 0, "a test gather"));
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        got[static_cast<size_t>(rank)] = std::move(mine);
        tags[static_cast<size_t>(rank)] = std::move(my_tags);
      }
      group.barrier("the end of the test");
    });
    for (size_t rank = 0; rank < 2; ++rank) {
      ASSERT_EQ(got[rank].size(), 3u) << "shared " << shared;
      for (size_t k = 0; k < 3; ++k) {
        ASSERT_EQ(got[rank][k].size(), 2u);
        ASSERT_EQ(tags[rank][k].size(), 2u);
        for (size_t m = 0; m < 2; ++m) {
          EXPECT_EQ(tags[rank][k][m], 0x0123456789abcdefULL + m) << "shared " << shared << " rank " << rank;
          const torch::Tensor& t = got[rank][k][m];
          const auto d = static_cast<double>(m);
          const torch::Tensor want =
              k == 0   ? (torch::arange(600000, torch::kFloat64).view({300000, 2}) + 1e6 * d).t()
              : k == 1 ? torch::full({3}, c10::complex<double>(d, -d), torch::kComplexDouble)
                       : torch::empty({0, 4}, torch::kInt16);
          EXPECT_EQ(t.scalar_type(), want.scalar_type());
          EXPECT_EQ(t.sizes(), want.sizes());
          EXPECT_TRUE(torch::equal(t, want))
              << "shared " << shared << " rank " << rank << " input " << k << " member " << m;
        }
      }
    }
  }
}

// A rank that leaves (its thread failed; a process that died is tested in shared_memory_exchange_test) is
// named at once, as Gloo names a closed connection.
TEST(DistributedGroup, ARankThatLeftASharedMemorySumIsNamedAtOnce) {
  std::string message;
  const auto t0 = std::chrono::steady_clock::now();
  run_ranks(2, [&](int rank, int port) {
    DistributedEnv e = env_for(rank, 2, port);
    e.timeout = Seconds(20);
    DistributedGroup group(e);
    ASSERT_TRUE(group.shares_memory());
    std::vector<torch::Tensor> x{torch::ones({4})};
    group.mark_step(0);
    group.allreduce_sum(x, 0, "warm-up");
    if (rank == 1) return;  // its group goes, and with it its end of the segment
    try {
      group.mark_step(1);
      group.allreduce_sum(x, 1, "gradient all-reduce");
    } catch (const Error& err) {
      message = err.what();
    }
  });
  EXPECT_NE(message.find("rank 0: gradient all-reduce of step 1 failed: rank 1 did not reach step 1"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("(shared memory: rank 1: it left the exchange)"), std::string::npos) << message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

// Point-to-point messages between ranks of one host go through shared memory, with
// PARTITA_SHARED_MEMORY=0 through Gloo: every rank sends every other one a message longer than a ring
// (10 MB; 2 MiB rings for 3 ranks) and a small one, and receives the small one first; both arrive whole.
TEST(DistributedGroup, RanksOfOneHostExchangeMessagesThroughSharedMemoryAsThroughGloo) {
  for (bool shared : {true, false}) {
    run_ranks(3, [&](int rank, int port) {
      DistributedEnv e = env_for(rank, 3, port);
      e.shared_memory = shared;
      DistributedGroup group(e);
      EXPECT_EQ(group.messages_share_memory(), shared);
      const auto big = [](int from, int to) {
        return torch::arange(2500000, torch::kFloat32) * (from + 1) + static_cast<float>(to);
      };
      for (int to = 0; to < 3; ++to) {
        if (to == rank) continue;
        group.send(big(rank, to), to, 1, "a big message");
        group.send(torch::full({3}, int64_t{10 * rank + to}, torch::kInt64), to, 2, "a small message");
      }
      for (int from = 0; from < 3; ++from) {
        if (from == rank) continue;
        torch::Tensor small = torch::empty({3}, torch::kInt64);
        group.receive(small, from, 2, "a small message");
        EXPECT_EQ(small[2].item<int64_t>(), 10 * from + rank) << shared;
        torch::Tensor got = torch::empty({2500000}, torch::kFloat32);
        group.receive(got, from, 1, "a big message");
        EXPECT_TRUE(torch::equal(got, big(from, rank))) << shared << " " << from << " -> " << rank;
      }
      group.wait_sends();
      group.barrier("the end of the test");
    });
  }
}

// A rank that leaves is named at once by a receive that waits for it through shared memory.
TEST(DistributedGroup, ARankThatLeftIsNamedByAReceiveThroughSharedMemory) {
  std::string message;
  const auto t0 = std::chrono::steady_clock::now();
  run_ranks(2, [&](int rank, int port) {
    DistributedEnv e = env_for(rank, 2, port);
    e.timeout = Seconds(20);
    DistributedGroup group(e);
    ASSERT_TRUE(group.messages_share_memory());
    if (rank == 1) return;  // its group goes, and with it its end of the mailbox
    try {
      torch::Tensor x = torch::empty({4});
      group.receive(x, 1, 0, "receiving activations from rank 1");
    } catch (const Error& err) {
      message = err.what();
    }
  });
  EXPECT_NE(
      message.find("receiving activations from rank 1: rank 1 died or stalled (shared memory: rank 1: it "
                   "left the exchange)"),
      std::string::npos)
      << message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

// Three ranks in one process share the steady clock; rank r reads it r seconds ahead, as if on another
// machine. Each rank's measured offset to rank 0 is -r s, within half its best round trip.
TEST(DistributedGroup, ClockOffsetToRankZeroIsWithinHalfARoundTrip) {
  std::mutex mutex;
  std::vector<ClockOffset> got(3);
  run_ranks(3, [&](int rank, int port) {
    DistributedGroup group(env_for(rank, 3, port));
    const double ahead_us = 1e6 * rank;
    const ClockOffset offset = group.clock_offset_to_rank0([ahead_us] {
      return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch())
                 .count() +
             ahead_us;
    });
    {
      std::lock_guard<std::mutex> lock(mutex);
      got[static_cast<size_t>(rank)] = offset;
    }
    group.barrier("the end of the test");
  });
  EXPECT_EQ(got[0].offset_us, 0);
  for (int r = 1; r < 3; ++r) {
    const ClockOffset& c = got[static_cast<size_t>(r)];
    EXPECT_GT(c.round_trip_us, 0) << r;
    EXPECT_LT(c.round_trip_us, 1e5) << r;
    // The method bounds the error by half the round trip; 1 us more for the decimal text the answer travels
    // in.
    EXPECT_LE(std::abs(c.offset_us + 1e6 * r), c.round_trip_us / 2 + 1) << r;
  }
}

// A store channel gathers on a thread of its own while the group's thread goes on using the group's store:
// rank 0's channel waits for rank 1's post, which rank 1 makes only after rank 0's group thread has answered
// its clock queries through the store (a channel on the group's own connection, blocked in its wait, could
// hold those up until the timeout).
TEST(DistributedGroup, AStoreChannelGathersBesideTheGroupsOwnStoreUse) {
  std::vector<std::string> got;
  std::mutex mutex;
  run_ranks(2, [&](int rank, int port) {
    DistributedGroup group(env_for(rank, 2, port, 5));
    auto channel = group.open_store_channel();
    std::vector<std::string> gathered;
    std::string error;
    const auto gather = [&] {
      try {
        gathered = channel->gather_to_rank0("side", "from " + std::to_string(rank));
      } catch (const Error& e) {
        error = e.what();
      }
    };
    const auto now_us = [] {
      return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
    std::thread side;
    if (rank == 0) {
      side = std::thread(gather);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the channel waits for rank 1 by now
      group.clock_offset_to_rank0(now_us, 2);
    } else {
      group.clock_offset_to_rank0(now_us, 2);
      side = std::thread(gather);
    }
    side.join();
    {
      std::lock_guard<std::mutex> lock(mutex);
      EXPECT_EQ(error, "") << "rank " << rank;
      if (rank == 0) {
        got = gathered;
      } else {
        EXPECT_TRUE(gathered.empty());
      }
    }
    group.barrier("the end of the test");
  });
  EXPECT_EQ(got, (std::vector<std::string>{"from 0", "from 1"}));
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

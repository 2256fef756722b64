#include "../src/channel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace partita::detail {
namespace {

using namespace std::chrono_literals;

// With a capacity of one, a second message waits until the receiver takes the first.
TEST(Channel, ASenderWaitsWhileTheCapacityIsTaken) {
  Channel<int> channel;
  ASSERT_TRUE(channel.send(1, 1));
  std::atomic<bool> sent{false};
  std::thread sender([&] {
    EXPECT_TRUE(channel.send(2, 1));
    sent = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(sent) << "the second message went in beside the first";
  EXPECT_EQ(channel.receive(), 1);
  sender.join();
  EXPECT_TRUE(sent);
  EXPECT_EQ(channel.receive(), 2);
  // Without a capacity nothing waits.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(channel.send(i));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(channel.receive(), i);
}

// A failing step closes its channels: a sender waiting for room gives up, as a receiver does.
TEST(Channel, ClosingWakesAWaitingSender) {
  Channel<int> channel;
  ASSERT_TRUE(channel.send(1, 1));
  std::atomic<int> result{-1};
  std::thread sender([&] { result = channel.send(2, 1) ? 1 : 0; });
  std::this_thread::sleep_for(20ms);
  channel.close();
  sender.join();
  EXPECT_EQ(result, 0);
  EXPECT_EQ(channel.receive(), std::nullopt);
  channel.reset();
  EXPECT_TRUE(channel.send(3, 1));
  EXPECT_EQ(channel.receive(), 3);
}

}  // namespace
}  // namespace partita::detail

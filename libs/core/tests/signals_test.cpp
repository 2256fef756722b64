#include "partita/core/signals.h"

#include <gtest/gtest.h>

namespace partita {
namespace {

volatile sig_atomic_t g_caught = 0;
extern "C" void count_caught(int) { g_caught = g_caught + 1; }
extern "C" void ignore_caught(int) {}

void (*current_handler(int sig))(int) {
  struct sigaction now {};
  sigaction(sig, nullptr, &now);
  return now.sa_handler;
}

TEST(CatchSignal, CatchesTheSignalWhileAliveAndPutsTheDefaultBack) {
  std::signal(SIGUSR1, SIG_DFL);
  g_caught = 0;
  {
    CatchSignal caught(SIGUSR1, count_caught);
    EXPECT_TRUE(caught.installed());
    std::raise(SIGUSR1);
    EXPECT_EQ(g_caught, 1);
  }
  EXPECT_EQ(current_handler(SIGUSR1), SIG_DFL);
}

TEST(CatchSignal, ASignalTheProcessIgnoresStaysIgnored) {
  std::signal(SIGUSR1, SIG_IGN);
  g_caught = 0;
  {
    CatchSignal caught(SIGUSR1, count_caught);
    EXPECT_FALSE(caught.installed());
    std::raise(SIGUSR1);  // ignored: the test goes on
    EXPECT_EQ(g_caught, 0);
  }
  EXPECT_EQ(current_handler(SIGUSR1), SIG_IGN);
  std::signal(SIGUSR1, SIG_DFL);
}

TEST(CatchSignal, NestedCatchesRestoreInOrder) {
  std::signal(SIGUSR2, SIG_DFL);
  {
    CatchSignal outer(SIGUSR2, count_caught);
    {
      CatchSignal inner(SIGUSR2, ignore_caught);
      EXPECT_TRUE(inner.installed());
      EXPECT_EQ(current_handler(SIGUSR2), &ignore_caught);
    }
    EXPECT_EQ(current_handler(SIGUSR2), &count_caught);
  }
  EXPECT_EQ(current_handler(SIGUSR2), SIG_DFL);
}

}  // namespace
}  // namespace partita

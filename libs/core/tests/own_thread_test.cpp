#include "partita/core/own_thread.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace partita {

TEST(OwnThread, RunsOnAnotherThreadAndWaitsForIt) {
  std::thread::id ran_on;
  int result = 0;
  run_on_own_thread([&] {
    ran_on = std::this_thread::get_id();
    result = 42;
  });
  EXPECT_NE(ran_on, std::this_thread::get_id());
  EXPECT_EQ(result, 42);  // written before run_on_own_thread returned
}

TEST(OwnThread, WhatTheWorkThrowsReachesTheCaller) {
  EXPECT_THROW(run_on_own_thread([] { throw std::runtime_error("in the worker"); }), std::runtime_error);
  try {
    run_on_own_thread([] { throw std::invalid_argument("bad value"); });
    FAIL() << "nothing was rethrown";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "bad value");
  }
}

}  // namespace partita

#include "partita/runtime/distributed_launch.h"

#include <gtest/gtest.h>

#include <chrono>

#include "partita/core/error.h"

namespace partita {

namespace {
LaunchOptions sh(int n, const std::string& script) {
  LaunchOptions o;
  o.processes = n;
  o.grace = Seconds(1);
  o.command = {"/bin/sh", "-c", script};
  return o;
}
}  // namespace

TEST(LaunchLocal, GivesEveryRankTheTorchrunEnvironment) {
  EXPECT_NO_THROW(launch_local(sh(3,
                                  "test \"$WORLD_SIZE\" = 3 && test \"$RANK\" = \"$LOCAL_RANK\" && "
                                  "test \"$MASTER_ADDR\" = 127.0.0.1 && test \"$MASTER_PORT\" -gt 0")));
}

TEST(LaunchLocal, AFailedRankIsNamedAndTheOthersAreStopped) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    launch_local(sh(3, "if [ \"$RANK\" = 1 ]; then exit 3; fi; exec sleep 60"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 exited with status 3 first"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 0 was killed by signal"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST(LaunchLocal, RefusesAnEmptyCommand) {
  LaunchOptions o;
  EXPECT_THROW(launch_local(o), Error);
}

}  // namespace partita

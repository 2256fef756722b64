#include "partita/runtime/distributed_launch.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

TEST(FreeTcpPort, ComesFromOutsideTheEphemeralRangeAndCanBeBound) {
  const auto [low, high] = ephemeral_port_range("/proc/sys/net/ipv4/ip_local_port_range");
  for (int i = 0; i < 20; ++i) {
    const int port = free_tcp_port();
    EXPECT_TRUE(port < low || port > high) << port << " is in the ephemeral range " << low << "-" << high;
    EXPECT_GE(port, 10000);
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << port;
    close(fd);
  }
}

TEST(FreeTcpPort, ReadsTheEphemeralRangeElseLinuxsDefault) {
  const std::string path = ::testing::TempDir() + "/port_range";
  std::ofstream(path) << "20000\t40000\n";
  EXPECT_EQ(ephemeral_port_range(path), std::make_pair(20000, 40000));
  std::ofstream(path) << "not a range\n";
  EXPECT_EQ(ephemeral_port_range(path), std::make_pair(32768, 60999));
  EXPECT_EQ(ephemeral_port_range(path + ".missing"), std::make_pair(32768, 60999));
}

TEST(LaunchLocal, RefusesAnEmptyCommand) {
  LaunchOptions o;
  EXPECT_THROW(launch_local(o), Error);
}

}  // namespace partita

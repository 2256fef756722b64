#include "partita/core/subprocess.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int exit_status(pid_t pid) {
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

TEST(SpawnQuiet, StderrGoesToTheFileStdoutNowhereAndTheExitStatusComesBack) {
  const std::string err =
      (std::filesystem::temp_directory_path() / ("partita-spawn-" + std::to_string(getpid()) + ".err"))
          .string();
  setenv("PARTITA_SPAWN_TEST", "inherited", 1);
  const pid_t pid =
      spawn_quiet({"/bin/sh", "-c", "echo to-stdout; echo \"to-stderr $PARTITA_SPAWN_TEST\" >&2; exit 3"},
                  err, "for a test");
  EXPECT_EQ(exit_status(pid), 3);
  EXPECT_EQ(read_file(err), "to-stderr inherited\n");  // the environment is passed on; stdout is not here
  // Truncated, not appended to, by the next child.
  EXPECT_EQ(exit_status(spawn_quiet({"/bin/sh", "-c", "echo again >&2"}, err, "for a test")), 0);
  EXPECT_EQ(read_file(err), "again\n");
  std::filesystem::remove(err);
}

TEST(SpawnQuiet, AProgramThatIsNotThereIsNamedWithThePurpose) {
  try {
    spawn_quiet({"/nonexistent/partita-worker"}, "/dev/null", "for the loopback all-reduce");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(
        e.what(),
        "cannot start '/nonexistent/partita-worker' for the loopback all-reduce: No such file or directory");
  }
}

// Seconds since `start`.
double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(WaitForChild, AChildThatEndsInTimeGivesItsExitStatus) {
  const ChildEnd end =
      wait_for_child(spawn_quiet({"/bin/sh", "-c", "exit 3"}, "/dev/null", "for a test"), Seconds(30));
  EXPECT_EQ(end.status, 3);
  EXPECT_FALSE(end.timed_out);
  EXPECT_FALSE(end.stopped);
}

TEST(WaitForChild, AChildPastTheTimeoutGetsSigterm) {
  const auto start = std::chrono::steady_clock::now();
  const ChildEnd end =
      wait_for_child(spawn_quiet({"/bin/sleep", "30"}, "/dev/null", "for a test"), Seconds(0.2));
  EXPECT_EQ(end.status, -SIGTERM);
  EXPECT_TRUE(end.timed_out);
  EXPECT_FALSE(end.stopped);
  EXPECT_GE(since(start), 0.2);
  EXPECT_LT(since(start), 5.0);  // not the child's 30 s
}

TEST(WaitForChild, AChildThatIgnoresSigtermIsKilledAfterTheGrace) {
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid =
      spawn_quiet({"/bin/sh", "-c", "trap '' TERM; exec /bin/sleep 30"}, "/dev/null", "for a test");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // past the trap
  const ChildEnd end = wait_for_child(pid, Seconds(0.1), nullptr, Seconds(0.3));
  EXPECT_EQ(end.status, -SIGKILL);
  EXPECT_TRUE(end.timed_out);
  EXPECT_GE(since(start), 0.6);  // 0.2 + the timeout + the grace
  EXPECT_LT(since(start), 5.0);
}

TEST(WaitForChild, AStopRequestStopsTheChildBeforeTheTimeout) {
  std::atomic<bool> stop{false};
  std::thread asker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop.store(true);
  });
  const auto start = std::chrono::steady_clock::now();
  const ChildEnd end =
      wait_for_child(spawn_quiet({"/bin/sleep", "30"}, "/dev/null", "for a test"), Seconds(60), &stop);
  asker.join();
  EXPECT_EQ(end.status, -SIGTERM);
  EXPECT_TRUE(end.stopped);
  EXPECT_FALSE(end.timed_out);
  EXPECT_LT(since(start), 5.0);
}

}  // namespace
}  // namespace partita

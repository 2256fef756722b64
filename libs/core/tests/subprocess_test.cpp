#include "partita/core/subprocess.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

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

}  // namespace
}  // namespace partita

#include "partita/core/subprocess.h"

#include <fcntl.h>
#include <spawn.h>

#include <cstring>

#include "partita/core/error.h"

extern char** environ;

namespace partita {

pid_t spawn_quiet(const std::vector<std::string>& argv, const std::string& stderr_path,
                  const std::string& purpose) {
  PARTITA_ASSERT(!argv.empty(), "spawn_quiet: no program");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  PARTITA_CHECK(rc == 0, "cannot start '", argv[0], "' ", purpose, ": ", std::strerror(rc));
  return pid;
}

}  // namespace partita

#include "partita/core/subprocess.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <optional>
#include <thread>

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

namespace {

// The exit status of `pid`, or -signal when a signal ended it; std::nullopt while it runs.
std::optional<int> poll_exit(pid_t pid) {
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  PARTITA_ASSERT(r >= 0, "waitpid failed: ", std::strerror(errno));
  if (r == 0) return std::nullopt;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

}  // namespace

ChildEnd wait_for_child(pid_t pid, Seconds timeout, const std::atomic<bool>* stop, Seconds grace) {
  using Clock = std::chrono::steady_clock;
  const auto after = [](Seconds s) {
    return Clock::now() +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s.value()));
  };
  const auto asked = [stop] { return stop != nullptr && stop->load(); };
  const auto poll = [&](Clock::time_point until, bool watch_stop) -> std::optional<int> {
    while (true) {
      if (auto status = poll_exit(pid)) return status;
      if (Clock::now() >= until || (watch_stop && asked())) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  };
  if (auto status = poll(after(timeout), true)) return {*status, false, false};
  const bool stopped = asked();
  kill(pid, SIGTERM);
  if (auto status = poll(after(grace), false)) return {*status, !stopped, stopped};
  kill(pid, SIGKILL);
  return {*poll(Clock::time_point::max(), false), !stopped, stopped};
}

}  // namespace partita

#pragma once
// Starting a child program whose output goes to files, for partita's own jobs (a loopback all-reduce's
// workers, optimize's launched runs). Torch-free.
#include <sys/types.h>

#include <atomic>
#include <string>
#include <vector>

#include "partita/core/units.h"

namespace partita {

// Starts argv[0] (a path: PATH is not searched) with `argv` and this process's environment, its stdout going
// to /dev/null and its stderr into `stderr_path` (created or truncated). Returns its pid, for waitpid.
// Throws partita::Error naming `purpose` ("for the loopback all-reduce") when it cannot start.
pid_t spawn_quiet(const std::vector<std::string>& argv, const std::string& stderr_path,
                  const std::string& purpose);

// How a child that wait_for_child waited for ended.
struct ChildEnd {
  int status = 0;          // its exit status, or -signal when a signal ended it
  bool timed_out = false;  // it ran past the timeout and was stopped
  bool stopped = false;    // `stop` asked for it, and it was stopped
};

// Waits for child `pid` to end, up to `timeout` or until `stop` (when set) is true; then sends it SIGTERM
// (`partita launch` passes that on to every rank) and, when it has not ended `grace` later, SIGKILL. Reaps
// it.
ChildEnd wait_for_child(pid_t pid, Seconds timeout, const std::atomic<bool>* stop = nullptr,
                        Seconds grace = Seconds(10));

}  // namespace partita

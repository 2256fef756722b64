#pragma once
// Starting a child program whose output goes to files, for partita's own jobs (a loopback all-reduce's
// workers, optimize's launched runs). Torch-free.
#include <sys/types.h>

#include <string>
#include <vector>

namespace partita {

// Starts argv[0] (a path: PATH is not searched) with `argv` and this process's environment, its stdout going
// to /dev/null and its stderr into `stderr_path` (created or truncated). Returns its pid, for waitpid.
// Throws partita::Error naming `purpose` ("for the loopback all-reduce") when it cannot start.
pid_t spawn_quiet(const std::vector<std::string>& argv, const std::string& stderr_path,
                  const std::string& purpose);

}  // namespace partita

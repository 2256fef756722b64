#pragma once
// `partita launch`: starts N local processes of one command with the torchrun environment (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), relays each one's stderr with a "[rank r] " prefix
// (stdout is inherited as is, so rank 0's results stay machine-readable), and waits. When a rank exits
// non-zero or dies, the others get `grace` to stop on their own (they see the failure in their next
// collective and say which rank failed), then SIGTERM, then SIGKILL after another `grace`. Children get
// SIGTERM if the launcher dies (PR_SET_PDEATHSIG). SIGINT or SIGTERM sent to the launcher goes on to every
// rank, and the launcher keeps relaying until they exit (a checkpointed `partita run` saves and stops after
// its current step, the ranks agreeing on which); a second one kills them. A signal the launcher was started
// ignoring (SIGINT, in a script's background job) stays ignored, in the ranks too. Torch-free. Not
// thread-safe (forks; reaps its own children only).
#include <string>
#include <utility>
#include <vector>

#include "partita/core/units.h"

namespace partita {

struct LaunchOptions {
  int processes = 2;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port picked now (another program could take it before rank 0)
  std::vector<std::string> command;  // program (searched in PATH; "partita" means this binary) and arguments
  Seconds grace{5};
  void validate() const;
};

// Runs the job to the end. Returns normally when every rank exited 0; otherwise throws partita::Error naming
// the first rank that failed and how ("rank 1 exited with status 1; the other ranks were stopped"), or, after
// a signal, the signal and how each rank ended.
void launch_local(const LaunchOptions& options);

// A TCP port that was free on 127.0.0.1 a moment ago, chosen at random outside the kernel's ephemeral range
// (ephemeral_port_range of /proc/sys/net/ipv4/ip_local_port_range), where no other process's connection can
// be given it before the caller binds it; from that range only when no room of 1000 ports is left outside.
int free_tcp_port();

// The ephemeral port range written in `path` ("LOW HIGH"), else Linux's default 32768-60999.
std::pair<int, int> ephemeral_port_range(const std::string& path);

}  // namespace partita

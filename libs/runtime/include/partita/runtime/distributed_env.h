#pragma once
// The torchrun conventions for one process of a multi-process job: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT (set by `partita launch` and by `torchrun --no_python`). Torch-free.
#include <optional>
#include <string>

#include "partita/core/units.h"

namespace partita {

struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  // torchrun's static rendezvous: its agent already hosts the TCPStore at MASTER_ADDR:MASTER_PORT, so every
  // rank is a client and keys live under "/worker/attempt_<restart_count>"
  // (TORCHELASTIC_USE_AGENT_STORE=True).
  bool agent_store = false;
  int restart_count = 0;
  // Bound on every collective and store operation; a dead or stalled peer is reported after at most this
  // long. PARTITA_DISTRIBUTED_TIMEOUT_S overrides the default.
  Seconds timeout{20};
  // Ranks on one host exchange collectives (all-reduce, a tensor group's all-gather) through shared memory
  // (/dev/shm) instead of Gloo's loopback TCP, when all of a collective's ranks can map one segment.
  // PARTITA_SHARED_MEMORY=0 turns it off (Gloo for everything).
  bool shared_memory = true;
};

// The job this process belongs to, or nullopt when WORLD_SIZE is unset or 1 (a single-process run).
// Throws partita::Error when the variables are present but malformed (naming the variable and its value).
std::optional<DistributedEnv> distributed_env_from_environment();

}  // namespace partita

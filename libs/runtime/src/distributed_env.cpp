#include "partita/runtime/distributed_env.h"

#include <cstdlib>
#include <string>

#include "partita/core/error.h"

namespace partita {

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

int int_env(const char* name, int lo, int hi) {
  const auto text = env(name);
  PARTITA_CHECK(text.has_value(), name,
                " is not set but WORLD_SIZE is; a multi-process run needs RANK, WORLD_SIZE, "
                "MASTER_ADDR and MASTER_PORT (start it with partita launch or torchrun)");
  size_t used = 0;
  long value = -1;
  try {
    value = std::stol(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  PARTITA_CHECK(used == text->size() && value >= lo && value <= hi, name, "='", *text,
                "' is not an integer in [", lo, ", ", hi, "]; fix the launcher's environment");
  return static_cast<int>(value);
}

}  // namespace

std::optional<DistributedEnv> distributed_env_from_environment() {
  if (!env("WORLD_SIZE")) return std::nullopt;
  DistributedEnv e;
  e.world_size = int_env("WORLD_SIZE", 1, 1 << 20);
  if (e.world_size == 1) return std::nullopt;
  e.rank = int_env("RANK", 0, e.world_size - 1);
  e.local_rank = env("LOCAL_RANK") ? int_env("LOCAL_RANK", 0, e.world_size - 1) : e.rank;
  e.master_addr = env("MASTER_ADDR").value_or("127.0.0.1");
  e.master_port = int_env("MASTER_PORT", 1, 65535);
  e.agent_store = env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
  if (e.agent_store && env("TORCHELASTIC_RESTART_COUNT"))
    e.restart_count = int_env("TORCHELASTIC_RESTART_COUNT", 0, 1 << 20);
  if (env("PARTITA_DISTRIBUTED_TIMEOUT_S")) {
    e.timeout = Seconds(int_env("PARTITA_DISTRIBUTED_TIMEOUT_S", 1, 3600));
  }
  if (env("PARTITA_SHARED_MEMORY")) e.shared_memory = int_env("PARTITA_SHARED_MEMORY", 0, 1) == 1;
  return e;
}

}  // namespace partita

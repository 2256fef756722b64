#include "partita/torch_bridge/machine_fingerprint.h"

#include <cstdlib>
#include <fstream>

#include <torch/version.h>

#include "partita/hardware/cpu_info.h"
#include "partita/hardware/machine_profile.h"

namespace partita {

namespace {

std::string loaded_blas() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const auto name = path.substr(path.rfind('/') + 1);
    if (name.find("blas") != std::string::npos) return path;
  }
  return "none loaded";
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

}  // namespace

std::string MachineFingerprint::text() const {
  return cpu_model + " | " + std::to_string(cores) + " cores | " + std::to_string(memory_gib) +
         " GiB | torch " + torch_version + " | " + blas + " | " + thread_env;
}

std::string MachineFingerprint::key() const { return stable_hash(text()); }

MachineFingerprint machine_fingerprint() {
  const CpuInfo cpu = discover_cpu();
  MachineFingerprint f;
  f.cpu_model = cpu.model_name;
  f.cores = cpu.physical_cores;
  f.memory_gib = cpu.memory_total.value() >> 30;
  f.torch_version = TORCH_VERSION;
  f.blas = loaded_blas();
  f.thread_env = "OMP_NUM_THREADS=" + env_or("OMP_NUM_THREADS", "unset") +
                 " OPENBLAS_NUM_THREADS=" + env_or("OPENBLAS_NUM_THREADS", "unset");
  return f;
}

}  // namespace partita

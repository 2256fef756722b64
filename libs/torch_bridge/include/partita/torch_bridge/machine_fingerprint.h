#pragma once
// What identifies this machine's performance for cache keys: CPU model, physical cores, memory (GiB), the
// LibTorch version, the BLAS library actually loaded (from /proc/self/maps: Debian picks reference BLAS or
// OpenBLAS through alternatives at run time) and the thread-related environment (OMP_NUM_THREADS,
// OPENBLAS_NUM_THREADS), which change measured speeds. Reads files only; thread-safe.
#include <string>

#include "partita/core/units.h"

namespace partita {

struct MachineFingerprint {
  std::string cpu_model;
  int cores = 0;
  int64_t memory_gib = 0;
  std::string torch_version;
  std::string blas;  // path of the loaded BLAS library, or "none loaded"
  std::string thread_env;

  std::string text() const;  // "AMD EPYC | 2 cores | 23 GiB | torch 1.13.0 | /usr/lib/.../libblas.so.3 | ..."
  std::string key() const;   // stable_hash(text())
};

MachineFingerprint machine_fingerprint();

}  // namespace partita

#include "partita/core/process_memory.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace partita {

namespace {
bool g_kept = false;
}

bool freed_memory_kept_in_process() { return g_kept; }

ProcessMemoryPolicy keep_freed_memory_in_process() {
  const char* setting = std::getenv("PARTITA_MALLOC");
  if (setting != nullptr && std::strcmp(setting, "default") == 0) return {false, "PARTITA_MALLOC=default"};
#if defined(__GLIBC__)
  constexpr int kLargestMmapThreshold = 32 << 20;  // glibc refuses larger values on 64-bit hosts
  const bool ok = mallopt(M_MMAP_THRESHOLD, kLargestMmapThreshold) == 1 &&
                  mallopt(M_TRIM_THRESHOLD, 0x7fffffff) == 1 && mallopt(M_TOP_PAD, 64 << 20) == 1;
  g_kept = ok;
  return ok ? ProcessMemoryPolicy{true, ""} : ProcessMemoryPolicy{false, "mallopt refused a setting"};
#else
  return {false, "not glibc"};
#endif
}

}  // namespace partita

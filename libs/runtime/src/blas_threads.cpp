#include "partita/runtime/blas_threads.h"

#include <dlfcn.h>

namespace partita {

namespace {
using GetFn = int (*)();
using SetFn = void (*)(int);
GetFn get_fn() { return reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads")); }
SetFn set_fn() { return reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")); }
}  // namespace

int blas_threads() {
  const GetFn f = get_fn();
  return f ? f() : -1;
}

bool set_blas_threads(int threads) {
  const SetFn f = set_fn();
  if (!f) return false;
  f(threads);
  return true;
}

}  // namespace partita

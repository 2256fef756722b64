#include "partita/core/signals.h"

#include "partita/core/error.h"

namespace partita {

CatchSignal::CatchSignal(int sig, void (*handler)(int), int flags) : sig_(sig) {
  const int read = sigaction(sig, nullptr, &previous_);
  PARTITA_ASSERT(read == 0, "sigaction: cannot read signal ", sig);
  if (previous_.sa_handler == SIG_IGN) return;
  struct sigaction action {};
  action.sa_handler = handler;
  action.sa_flags = flags;
  sigemptyset(&action.sa_mask);
  const int set = sigaction(sig, &action, nullptr);
  PARTITA_ASSERT(set == 0, "sigaction: cannot catch signal ", sig);
  installed_ = true;
}

CatchSignal::~CatchSignal() {
  if (installed_) sigaction(sig_, &previous_, nullptr);
}

}  // namespace partita

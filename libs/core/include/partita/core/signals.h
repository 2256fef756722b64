#pragma once
// Catching a signal for the length of a scope, the way shells expect: a signal the process was started
// ignoring stays ignored. A non-interactive shell starts its background jobs with SIGINT ignored, so that a
// Ctrl-C meant for the script's foreground job does not reach them (bash; Python keeps such a SIGINT ignored
// too); a handler installed over that would stop them anyway.
#include <csignal>

namespace partita {

class CatchSignal {
 public:
  // Installs `handler` for `sig` with sa_flags `flags` and an empty mask, unless `sig` is ignored now.
  CatchSignal(int sig, void (*handler)(int), int flags = 0);
  // Puts the action that was there before back.
  ~CatchSignal();
  CatchSignal(const CatchSignal&) = delete;
  CatchSignal& operator=(const CatchSignal&) = delete;
  // False when the signal was ignored and left so.
  bool installed() const { return installed_; }

 private:
  int sig_;
  bool installed_ = false;
  struct sigaction previous_ {};
};

}  // namespace partita

/* A crash reporter to preload where no debugger runs (the lent GPU machine has no gdb): on SIGSEGV, SIGBUS,
 * SIGFPE or SIGILL it writes the thread's backtrace to stderr, then dies of the same signal. Frames without a
 * symbol print as "file(+offset)"; `addr2line -f -C -e file offset` names them.
 *
 *   gcc -shared -fPIC -O1 -o segv-trace.so scripts/segv-trace.c
 *   LD_PRELOAD=$PWD/segv-trace.so program ...
 */
#define _GNU_SOURCE
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void on_crash(int sig) {
  void* frames[64];
  const int n = backtrace(frames, 64);
  const char* name = strsignal(sig);
  (void)!write(2, "\n*** segv-trace: ", 17);
  (void)!write(2, name, strlen(name));
  (void)!write(2, "; backtrace:\n", 13);
  backtrace_symbols_fd(frames, n, 2);
  signal(sig, SIG_DFL);
  raise(sig);
}

__attribute__((constructor)) static void install(void) {
  static char stack[1 << 16]; /* a stack overflow still gets its report */
  stack_t ss = {.ss_sp = stack, .ss_size = sizeof stack, .ss_flags = 0};
  sigaltstack(&ss, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_crash;
  sa.sa_flags = SA_ONSTACK;
  const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
  for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; ++i) sigaction(sigs[i], &sa, 0);
}

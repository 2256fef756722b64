/* A crash reporter to preload where no debugger runs (the lent GPU machine has no gdb): on SIGSEGV, SIGBUS,
 * SIGFPE or SIGILL it writes the thread's backtrace to stderr, then dies of the same signal. Frames without a
 * symbol print as "file(+offset)"; `addr2line -f -C -e file offset` names them. Every thread gets a signal
 * stack of its own (pthread_create is wrapped), so a thread that overflows its stack still reports.
 *
 *   gcc -shared -fPIC -O1 -o segv-trace.so scripts/segv-trace.c -ldl -pthread
 *   LD_PRELOAD=$PWD/segv-trace.so program ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

enum { kSignalStack = 1 << 16 };

/* This thread's signal stack; never freed (a thread's exit would otherwise race its last signal). */
static void give_signal_stack(void) {
  stack_t ss = {.ss_sp = malloc(kSignalStack), .ss_size = kSignalStack, .ss_flags = 0};
  if (ss.ss_sp) sigaltstack(&ss, 0);
}

struct start {
  void* (*fn)(void*);
  void* arg;
};

static void* run_with_signal_stack(void* p) {
  struct start s = *(struct start*)p;
  free(p);
  give_signal_stack();
  return s.fn(s.arg);
}

typedef int (*create_fn)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);

int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*fn)(void*), void* arg) {
  static create_fn real;
  if (!real) real = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
  struct start* s = malloc(sizeof *s);
  if (!s) return real(thread, attr, fn, arg);
  s->fn = fn;
  s->arg = arg;
  const int rc = real(thread, attr, run_with_signal_stack, s);
  if (rc != 0) free(s);
  return rc;
}

/* Writes "file(+0xoffset)" for `pc` (the form backtrace_symbols_fd uses for frames without a symbol). */
static void write_place(const char* what, void* pc) {
  char line[512];
  Dl_info info;
  int n;
  if (dladdr(pc, &info) && info.dli_fname)
    n = snprintf(line, sizeof line, "%s %s(+0x%lx) [%p]\n", what, info.dli_fname,
                 (unsigned long)((char*)pc - (char*)info.dli_fbase), pc);
  else
    n = snprintf(line, sizeof line, "%s %p (in no loaded file)\n", what, pc);
  if (n > 0) (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void on_crash(int sig, siginfo_t* info, void* context) {
  void* frames[64];
  const char* name = strsignal(sig);
  (void)!write(2, "\n*** segv-trace: ", 17);
  (void)!write(2, name, strlen(name));
  (void)!write(2, "\n", 1);
  write_place("faulting address:", info->si_addr);
#if defined(__x86_64__)
  /* A call through a bad pointer leaves no frame to unwind from; the return address it pushed names the
   * caller. */
  const ucontext_t* uc = (const ucontext_t*)context;
  void* pc = (void*)uc->uc_mcontext.gregs[REG_RIP];
  void** sp = (void**)uc->uc_mcontext.gregs[REG_RSP];
  write_place("instruction:", pc);
  Dl_info where;
  if (!dladdr(pc, &where)) write_place("returns to (a call through a bad pointer?):", *sp);
#else
  (void)context;
#endif
  (void)!write(2, "backtrace:\n", 11);
  const int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, 2);
  signal(sig, SIG_DFL);
  raise(sig);
}

__attribute__((constructor)) static void install(void) {
  give_signal_stack(); /* the main thread's */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_crash;
  sa.sa_flags = SA_ONSTACK | SA_SIGINFO;
  const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
  for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; ++i) sigaction(sigs[i], &sa, 0);
}

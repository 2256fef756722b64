#include "partita/runtime/distributed_launch.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/core/signals.h"

extern char** environ;

namespace partita {

namespace {

using Clock = std::chrono::steady_clock;

struct Child {
  int rank = 0;
  pid_t pid = -1;
  int err_fd = -1;      // read end of its stderr pipe (-1 once closed)
  std::string partial;  // stderr text after the last newline
  bool running = true;
  int status = 0;  // waitpid status once reaped
};

// The environment of rank `rank`: ours without the torchrun variables, plus the job's.
std::vector<std::string> child_environment(const LaunchOptions& o, int port, int rank) {
  static const char* kOwned[] = {"RANK=",
                                 "WORLD_SIZE=",
                                 "LOCAL_RANK=",
                                 "LOCAL_WORLD_SIZE=",
                                 "MASTER_ADDR=",
                                 "MASTER_PORT=",
                                 "TORCHELASTIC_USE_AGENT_STORE="};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    bool owned = false;
    for (const char* k : kOwned) owned = owned || std::strncmp(*e, k, std::strlen(k)) == 0;
    if (!owned) env.emplace_back(*e);
  }
  for (const std::string& kv :
       {"RANK=" + std::to_string(rank), "WORLD_SIZE=" + std::to_string(o.processes),
        "LOCAL_RANK=" + std::to_string(rank), "LOCAL_WORLD_SIZE=" + std::to_string(o.processes),
        "MASTER_ADDR=" + o.master_addr, "MASTER_PORT=" + std::to_string(port)}) {
    env.push_back(kv);
  }
  return env;
}

std::string program_path(const std::string& name) {
  if (name != "partita") return name;
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : name;
}

Child start(const LaunchOptions& o, int port, int rank) {
  int fds[2];
  PARTITA_CHECK(pipe2(fds, O_CLOEXEC) == 0, "cannot create a pipe for rank ", rank, ": ",
                std::strerror(errno));
  // Everything the child needs is built before fork: only async-signal-safe calls happen in between.
  std::vector<std::string> args = o.command;
  args[0] = program_path(args[0]);
  std::vector<std::string> env = child_environment(o, port, rank);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  PARTITA_CHECK(pid >= 0, "cannot start rank ", rank, ": fork failed: ", std::strerror(errno));
  if (pid == 0) {
    dup2(fds[1], 2);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the launcher is already gone
    execvpe(argv[0], argv.data(), envp.data());
    const char* msg = "partita launch: cannot run the command: ";
    (void)!write(2, msg, std::strlen(msg));
    (void)!write(2, std::strerror(errno), std::strlen(std::strerror(errno)));
    (void)!write(2, "\n", 1);
    _exit(127);
  }
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  return Child{rank, pid, fds[0], {}, true, 0};
}

void write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = write(fd, s.data() + done, s.size() - done);
    if (n <= 0 && errno != EINTR) return;
    if (n > 0) done += static_cast<size_t>(n);
  }
}

// Reads what is available and relays whole lines with the rank prefix; at EOF relays the rest and closes.
void relay(Child& c) {
  char buf[4096];
  while (true) {
    const ssize_t n = read(c.err_fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // EAGAIN: nothing more now
    if (n == 0) {
      if (!c.partial.empty()) write_all(2, "[rank " + std::to_string(c.rank) + "] " + c.partial + "\n");
      c.partial.clear();
      close(c.err_fd);
      c.err_fd = -1;
      return;
    }
    c.partial.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = c.partial.find('\n')) != std::string::npos) {
      write_all(2, "[rank " + std::to_string(c.rank) + "] " + c.partial.substr(0, nl + 1));
      c.partial.erase(0, nl + 1);
    }
  }
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
  return "stopped";
}

bool failed(int status) { return !WIFEXITED(status) || WEXITSTATUS(status) != 0; }

// SIGINT and SIGTERM sent to the launcher while it waits: counted here, passed on by its loop.
volatile sig_atomic_t g_signals = 0;
volatile sig_atomic_t g_last_signal = 0;
extern "C" void count_signal(int sig) {
  g_last_signal = sig;
  g_signals = g_signals + 1;
}

}  // namespace

void LaunchOptions::validate() const {
  PARTITA_CHECK(processes >= 1 && processes <= 1024, "launch -n ", processes, ": use 1 to 1024 processes");
  PARTITA_CHECK(master_port >= 0 && master_port <= 65535, "--master-port ", master_port,
                " is not a TCP port");
  PARTITA_CHECK(!command.empty(),
                "launch needs a command after --, e.g. partita launch -n 2 -- partita run ...");
  PARTITA_CHECK(grace.value() >= 0, "launch grace period must not be negative, got ", grace.value());
}

namespace {

// Whether `port` on 127.0.0.1 can be bound now (0: any; the port bound is written back).
bool bindable(int& port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  PARTITA_CHECK(fd >= 0, "cannot open a socket to find a free port: ", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t len = sizeof(addr);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  close(fd);
  if (ok) port = ntohs(addr.sin_port);
  return ok;
}

}  // namespace

std::pair<int, int> ephemeral_port_range(const std::string& path) {
  std::ifstream in(path);
  int low = 0, high = 0;
  if (in >> low >> high && low >= 1 && low <= high && high <= 65535) return {low, high};
  return {32768, 60999};  // Linux's default
}

int free_tcp_port() {
  // Outside the ephemeral range: a port the kernel hands out for bind(0) or an outgoing connection goes back
  // to that pool when closed, and another process's connection (Gloo opens many) may take it before the
  // store binds it; one chosen here can only meet another caller's choice (1 in thousands), and is checked.
  const auto [low, high] = ephemeral_port_range("/proc/sys/net/ipv4/ip_local_port_range");
  const int below = low - 10000, above = 65535 - high;  // from 10000 up: clear of well-known services
  std::mt19937 random(std::random_device{}());
  for (int attempt = 0; attempt < 64 && std::max(below, above) >= 1000; ++attempt) {
    int port = below >= above ? 10000 + static_cast<int>(random() % static_cast<unsigned>(below))
                              : high + 1 + static_cast<int>(random() % static_cast<unsigned>(above));
    if (bindable(port)) return port;
  }
  int port = 0;
  PARTITA_CHECK(bindable(port), "cannot find a free TCP port on 127.0.0.1; pass --master-port");
  return port;
}

void launch_local(const LaunchOptions& options) {
  options.validate();
  const int port = options.master_port > 0 ? options.master_port : free_tcp_port();
  // A signal to the launcher goes on to every rank (a checkpointed run saves and stops after its step, the
  // ranks agreeing on which); a second one kills them. Caught from before the first fork, so none is lost (a
  // child runs the handler only until its exec). A signal the launcher was started ignoring stays ignored
  // (core/signals.h), and so it does in the ranks, which inherit it.
  g_signals = 0;
  const CatchSignal forward_int(SIGINT, count_signal), forward_term(SIGTERM, count_signal);
  std::vector<Child> children;
  int first_failed = -1;
  Clock::time_point failed_at;
  try {
    for (int r = 0; r < options.processes; ++r) children.push_back(start(options, port, r));
  } catch (...) {
    for (auto& c : children) kill(c.pid, SIGKILL), waitpid(c.pid, nullptr, 0);
    throw;
  }
  const auto grace = std::chrono::duration<double>(options.grace.value());
  bool termed = false, killed = false;
  int signals_passed = 0, stopped_by = 0;
  while (true) {
    if (g_signals > signals_passed) {
      signals_passed = g_signals;
      const bool first_signal = stopped_by == 0;
      if (first_signal) stopped_by = g_last_signal;
      for (auto& c : children) {
        if (c.running) kill(c.pid, first_signal ? stopped_by : SIGKILL);
      }
      const std::string line =
          first_signal ? fmt::format(
                             "partita launch: got SIG{}; passed it on to the {} processes (a checkpointed "
                             "run saves and stops after its current step; send it again to kill them)\n",
                             sigabbrev_np(stopped_by), options.processes)
                       : std::string("partita launch: got a second signal; killing the processes\n");
      write_all(2, line);
    }
    std::vector<pollfd> fds;
    for (auto& c : children) {
      if (c.err_fd >= 0) fds.push_back(pollfd{c.err_fd, POLLIN, 0});
    }
    if (!fds.empty()) poll(fds.data(), fds.size(), 50);
    for (auto& c : children) {
      if (c.err_fd >= 0) relay(c);
    }
    int running = 0;
    for (auto& c : children) {
      if (c.running && waitpid(c.pid, &c.status, WNOHANG) == c.pid) {
        c.running = false;
        if (failed(c.status) && first_failed < 0) first_failed = c.rank, failed_at = Clock::now();
      }
      running += c.running ? 1 : 0;
    }
    if (running == 0) break;
    if (fds.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (first_failed < 0) continue;
    const auto since = Clock::now() - failed_at;
    const bool term_now = !termed && since > grace;
    const bool kill_now = !killed && since > 2 * grace;
    for (auto& c : children) {
      if (c.running && (term_now || kill_now)) kill(c.pid, kill_now ? SIGKILL : SIGTERM);
    }
    termed = termed || term_now;
    killed = killed || kill_now;
  }
  for (auto& c :
       children) {  // what is left in the pipes (a grandchild may hold one open: don't wait for EOF)
    if (c.err_fd >= 0) {
      relay(c);
      if (!c.partial.empty()) write_all(2, "[rank " + std::to_string(c.rank) + "] " + c.partial + "\n");
      close(c.err_fd);
    }
  }
  if (first_failed < 0) return;
  if (stopped_by != 0) {
    std::string ranks;
    for (const auto& c : children)
      ranks += (ranks.empty() ? "" : "; ") + ("rank " + std::to_string(c.rank) + " " + describe(c.status));
    PARTITA_FAIL("stopped by SIG", sigabbrev_np(stopped_by), ": ", ranks, " (", options.processes,
                 " processes, master port ", port, ")");
  }
  std::string others;
  for (const auto& c : children) {
    if (c.rank == first_failed || !failed(c.status)) continue;
    others += (others.empty() ? " " : "; ") + ("rank " + std::to_string(c.rank) + " " + describe(c.status));
  }
  PARTITA_FAIL("rank ", first_failed, " ", describe(children[static_cast<size_t>(first_failed)].status),
               " first; then", others.empty() ? " the others finished" : others, " (", options.processes,
               " processes, master port ", port, ")");
}

}  // namespace partita

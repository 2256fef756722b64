#include "shared_memory_exchange.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <signal.h>  // NOLINT(modernize-deprecated-headers): kill()
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>

#include "partita/core/error.h"

namespace partita::detail {

namespace {

static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free,
              "cross-process atomics must be lock-free");

constexpr uint64_t kMagic = 0x7061727469746131ULL;  // "partita1"
constexpr auto kSpin = std::chrono::microseconds(30);
constexpr auto kLivenessPeriod = std::chrono::milliseconds(50);

// One member's published state, on a cache line pair of its own.
struct alignas(128) MemberState {
  std::atomic<uint32_t> written;   // the last round whose chunk is in the slot
  std::atomic<uint32_t> read;      // the last round whose chunks this member has consumed
  std::atomic<uint32_t> sleepers;  // members sleeping on this member's words
  std::atomic<uint32_t> gone;      // 1 once this member left
  std::atomic<int32_t> pid;
  std::atomic<uint64_t> bytes;  // the byte count of its current exchange
};

struct Header {
  uint64_t magic;
  uint64_t token;
  uint32_t members;
  uint64_t slot_bytes;
};

size_t states_offset() { return (sizeof(Header) + 127) / 128 * 128; }
size_t slots_offset(int members) {
  const size_t end = states_offset() + sizeof(MemberState) * static_cast<size_t>(members);
  return (end + 4095) / 4096 * 4096;
}

long futex(std::atomic<uint32_t>* word, int op, uint32_t value, const timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, timeout, nullptr, 0);
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

bool reached(uint32_t value, uint32_t target) { return static_cast<int32_t>(value - target) >= 0; }

// Whether process `pid` still runs (a zombie, exited but not reaped yet, does not).
bool process_alive(int32_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;  // cannot tell: the kill() above said it exists
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] != 'Z';
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

struct SharedMemoryExchange::Segment {
  void* base = nullptr;
  size_t size = 0;
  ~Segment() {
    if (base != nullptr) munmap(base, size);
  }
  Header& header() const { return *static_cast<Header*>(base); }
  MemberState& state(int m) const {
    return reinterpret_cast<MemberState*>(static_cast<uint8_t*>(base) + states_offset())[m];
  }
  uint8_t* slot(int m) const {
    const Header& h = header();
    return static_cast<uint8_t*>(base) + slots_offset(static_cast<int>(h.members)) +
           static_cast<size_t>(m) * h.slot_bytes;
  }
};

std::string pid_namespace() {
  char buf[128];
  const ssize_t n = readlink("/proc/self/ns/pid", buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

SharedMemoryExchange::SharedMemoryExchange(std::unique_ptr<Segment> segment, std::string name, int member)
    : segment_(std::move(segment)), name_(std::move(name)), member_(member) {
  MemberState& me = segment_->state(member_);
  me.pid.store(static_cast<int32_t>(getpid()));
  // Joining late or again: continue from the rounds the others count (0 in a fresh segment).
  round_ = me.written.load();
}

std::unique_ptr<SharedMemoryExchange> SharedMemoryExchange::create(int members, size_t slot_bytes,
                                                                   std::string& why) {
  PARTITA_ASSERT(members >= 2 && slot_bytes > 0 && slot_bytes % 64 == 0,
                 "bad shared-memory exchange: ", members, " members of ", slot_bytes, " bytes");
  std::random_device random;
  const uint64_t token = (uint64_t{random()} << 32) ^ random();
  const std::string name = "/partita-" + std::to_string(getpid()) + "-" + std::to_string(token);
  const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    why = "cannot make " + name + " in /dev/shm: " + errno_text();
    return nullptr;
  }
  auto segment = std::make_unique<Segment>();
  segment->size = slots_offset(members) + slot_bytes * static_cast<size_t>(members);
  // posix_fallocate reserves the pages: touching a page tmpfs has no room for would be a SIGBUS.
  const int reserved = posix_fallocate(fd, 0, static_cast<off_t>(segment->size));
  if (reserved != 0) {
    why =
        "cannot reserve " + std::to_string(segment->size) + " bytes in /dev/shm: " + std::strerror(reserved);
    close(fd);
    shm_unlink(name.c_str());
    return nullptr;
  }
  segment->base = mmap(nullptr, segment->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (segment->base == MAP_FAILED) {
    segment->base = nullptr;
    why = "cannot map " + name + ": " + errno_text();
    shm_unlink(name.c_str());
    return nullptr;
  }
  // The file is zero-filled: every counter starts at 0. The header goes in last, magic first.
  Header& h = segment->header();
  h.token = token;
  h.members = static_cast<uint32_t>(members);
  h.slot_bytes = slot_bytes;
  std::atomic_thread_fence(std::memory_order_release);
  h.magic = kMagic;
  return std::unique_ptr<SharedMemoryExchange>(new SharedMemoryExchange(std::move(segment), name, 0));
}

std::unique_ptr<SharedMemoryExchange> SharedMemoryExchange::join(const std::string& name, uint64_t token,
                                                                 int member, std::string& why) {
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) {
    why = "cannot open " + name + " (another host, or another /dev/shm): " + errno_text();
    return nullptr;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(slots_offset(1))) {
    why = name + " is not a partita segment";
    close(fd);
    return nullptr;
  }
  auto segment = std::make_unique<Segment>();
  segment->size = static_cast<size_t>(st.st_size);
  segment->base = mmap(nullptr, segment->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (segment->base == MAP_FAILED) {
    segment->base = nullptr;
    why = "cannot map " + name + ": " + errno_text();
    return nullptr;
  }
  const Header& h = segment->header();
  std::atomic_thread_fence(std::memory_order_acquire);
  if (h.magic != kMagic || h.token != token || member <= 0 || member >= static_cast<int>(h.members) ||
      segment->size < slots_offset(static_cast<int>(h.members)) + h.slot_bytes * h.members) {
    why = name + " is not the segment this job made";
    return nullptr;
  }
  return std::unique_ptr<SharedMemoryExchange>(new SharedMemoryExchange(std::move(segment), name, member));
}

SharedMemoryExchange::~SharedMemoryExchange() {
  MemberState& me = segment_->state(member_);
  me.gone.store(1);
  futex(&me.written, FUTEX_WAKE, INT_MAX, nullptr);
  futex(&me.read, FUTEX_WAKE, INT_MAX, nullptr);
  if (member_ == 0) unlink();
}

uint64_t SharedMemoryExchange::token() const { return segment_->header().token; }
int SharedMemoryExchange::members() const { return static_cast<int>(segment_->header().members); }

void SharedMemoryExchange::unlink() noexcept {
  if (unlinked_) return;
  unlinked_ = true;
  shm_unlink(name_.c_str());
}

void SharedMemoryExchange::publish(bool read, uint32_t value) {
  MemberState& me = segment_->state(member_);
  std::atomic<uint32_t>& word = read ? me.read : me.written;
  word.store(value);  // sequentially consistent with the sleepers count below (see wait_until)
  if (me.sleepers.load() > 0) futex(&word, FUTEX_WAKE, INT_MAX, nullptr);
}

void SharedMemoryExchange::wait_until(int member, bool for_read, uint32_t target,
                                      std::chrono::steady_clock::time_point deadline) {
  MemberState& peer = segment_->state(member);
  std::atomic<uint32_t>& word = for_read ? peer.read : peer.written;
  if (reached(word.load(std::memory_order_acquire), target)) return;
  const auto spin_until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (reached(word.load(std::memory_order_acquire), target)) return;
    if (i % 64 == 63 && std::chrono::steady_clock::now() > spin_until) break;
    cpu_relax();
  }
  // Asleep: the waker stores its word, then reads sleepers; this side counts itself in, then reads the word
  // (both sequentially consistent), so one of the two sees the other. FUTEX_WAIT returns at once when the
  // word moved on since it was read.
  peer.sleepers.fetch_add(1);
  struct Leave {
    std::atomic<uint32_t>& sleepers;
    ~Leave() { sleepers.fetch_sub(1); }
  } leave{peer.sleepers};
  auto next_liveness_check = std::chrono::steady_clock::now() + kLivenessPeriod;
  for (;;) {
    const uint32_t seen = word.load();
    if (reached(seen, target)) return;
    if (peer.gone.load() != 0) throw PeerLost(member, "it left the exchange");
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_liveness_check) {
      const int32_t pid = peer.pid.load();
      if (pid > 0 && !process_alive(pid))
        throw PeerLost(member, "its process " + std::to_string(pid) + " exited");
      next_liveness_check = now + kLivenessPeriod;
    }
    if (now >= deadline) throw PeerLost(member, "it did not arrive before the timeout");
    const auto left =
        std::min<std::chrono::steady_clock::duration>(next_liveness_check - now, deadline - now);
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    const timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    futex(&word, FUTEX_WAIT, seen, &ts);
  }
}

void SharedMemoryExchange::exchange(const void* data, size_t bytes,
                                    std::chrono::steady_clock::time_point deadline, const Consume& consume) {
  const Header& h = segment_->header();
  const int n = static_cast<int>(h.members);
  const size_t slot_bytes = h.slot_bytes;
  const size_t rounds = bytes == 0 ? 1 : (bytes + slot_bytes - 1) / slot_bytes;
  MemberState& me = segment_->state(member_);
  std::vector<const uint8_t*> chunks(static_cast<size_t>(n));
  for (size_t r = 0; r < rounds; ++r) {
    const uint32_t round = round_ + 1;
    // My slot is free once every other member has consumed the previous round.
    for (int m = 0; m < n; ++m)
      if (m != member_) wait_until(m, /*for_read=*/true, round - 1, deadline);
    const size_t offset = r * slot_bytes;
    const size_t length = std::min(slot_bytes, bytes - offset);
    if (length > 0) std::memcpy(segment_->slot(member_), static_cast<const uint8_t*>(data) + offset, length);
    me.bytes.store(bytes);
    publish(/*read=*/false, round);
    for (int m = 0; m < n; ++m) {
      if (m != member_) {
        wait_until(m, /*for_read=*/false, round, deadline);
        const uint64_t theirs = segment_->state(m).bytes.load();
        PARTITA_CHECK(theirs == bytes, "shared-memory exchange: member ", m, " handed in ", theirs,
                      " bytes, member ", member_, " ", bytes, "; the processes run different collectives");
      }
      chunks[static_cast<size_t>(m)] = segment_->slot(m);
    }
    consume(offset, length, chunks);
    publish(/*read=*/true, round);
    round_ = round;
  }
}

}  // namespace partita::detail

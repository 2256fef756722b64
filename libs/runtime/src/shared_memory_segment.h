#pragma once
// What the shared-memory paths between the processes of one host have in common (shared_memory_exchange.h
// for collectives, shared_memory_mailbox.h for point-to-point messages): a named /dev/shm segment that one
// member makes and the others map, the liveness of the members, and waiting on a futex word.
//
// A segment starts with a SegmentHeader: a magic number per kind of segment, a random token (joining needs
// it: a name alone is not enough) and the member count. Member 0 makes it under a new random name with its
// pages reserved (a full /dev/shm fails there, not as a SIGBUS later) and zero-filled; the name is removed
// once every member has mapped it. Torch-free.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace partita::detail {

// A member that left, exited or did not arrive before the deadline.
struct PeerLost : std::runtime_error {
  PeerLost(int who, const std::string& what) : std::runtime_error(what), member(who) {}
  int member;
};

struct SegmentHeader {
  uint64_t magic;
  uint64_t token;
  uint32_t members;
  uint64_t unit_bytes;  // a kind's size parameter (an exchange's slot, a mailbox's ring)
};

// Whether a member is still there: set by the member itself, read by the others.
struct Presence {
  std::atomic<uint32_t> gone;  // 1 once the member left
  std::atomic<int32_t> pid;
};

class SharedSegment {
 public:
  // Makes a segment of `bytes` bytes (at least a SegmentHeader) and writes its header; nullptr with the
  // reason in `why` when this host cannot.
  static std::unique_ptr<SharedSegment> create(uint64_t magic, int members, size_t unit_bytes, size_t bytes,
                                               std::string& why);
  // Maps segment `name`; nullptr with `why` unless it is of kind `magic`, carries `token`, has a member
  // `member` > 0 and is at least `bytes_needed(header)` long.
  static std::unique_ptr<SharedSegment> join(uint64_t magic, const std::string& name, uint64_t token,
                                             int member,
                                             const std::function<size_t(const SegmentHeader&)>& bytes_needed,
                                             std::string& why);
  ~SharedSegment();  // unmaps (the name is not removed: unlink())
  SharedSegment(const SharedSegment&) = delete;
  SharedSegment& operator=(const SharedSegment&) = delete;

  const std::string& name() const { return name_; }
  const SegmentHeader& header() const { return *static_cast<const SegmentHeader*>(base_); }
  uint8_t* at(size_t offset) const { return static_cast<uint8_t*>(base_) + offset; }
  void unlink() noexcept;  // idempotent

 private:
  SharedSegment(void* base, size_t size, std::string name)
      : base_(base), size_(size), name_(std::move(name)) {}
  void* base_;
  size_t size_;
  std::string name_;
  bool unlinked_ = false;
};

// Rounds `bytes` up to a multiple of `align` (a power of two).
constexpr size_t align_up(size_t bytes, size_t align) { return (bytes + align - 1) & ~(align - 1); }

// Wakes the threads sleeping on `word` when `sleepers` says there are any. Call after changing `word` (or the
// state it rings for) with a sequentially consistent operation.
void wake(std::atomic<uint32_t>& word, std::atomic<uint32_t>& sleepers);
// Returns once done() holds. Spins for spin_window() (spin_condition.h), then sleeps on `word`, counted in
// `sleepers` (whoever changes what done() reads changes `word` afterwards and calls wake()). While asleep it
// checks `watched` (member, presence): a member that left throws PeerLost at once, one whose process exited
// within 50 ms; passing `deadline` throws PeerLost naming the first watched member (-1 when none). done() is
// checked first, so what a lost member finished before it left still counts.
void wait_for(const std::function<bool()>& done, std::atomic<uint32_t>& word, std::atomic<uint32_t>& sleepers,
              const std::vector<std::pair<int, const Presence*>>& watched,
              std::chrono::steady_clock::time_point deadline);

// Wakes every thread sleeping on `word`, whatever `sleepers` says (a member that leaves).
void wake_all(std::atomic<uint32_t>& word);

// The pid namespace this process is in ("pid:[4026531836]"), or empty when /proc does not say.
std::string pid_namespace();

}  // namespace partita::detail

#pragma once
// Collectives between the processes of one host through a POSIX shared-memory segment (/dev/shm), for the
// ranks of a multi-process job that share a machine: Gloo over loopback TCP took 0.5-1.1 ms per all-gather
// of 64 bytes on the 2-core development VM (two processes, python3-torch 1.13), a futex round trip between
// two processes 2-7 us.
//
// The segment holds one slot per member. An exchange moves every member's bytes through its slot in rounds
// of at most `slot_bytes`: in round s a member waits until every other member has read round s-1 (its slot
// is free), copies its chunk in and publishes s, waits until every other member published s, hands all
// chunks to the caller (its own read back from its slot, so the caller may overwrite its input), and
// publishes that it read s. Members wait by spinning briefly, then on a futex.
//
// Failure model: a member that leaves (its exchange is destroyed, e.g. its thread failed) is seen at once; a
// member whose process exits is seen within 50 ms (its pid is checked while waiting; members share a pid
// namespace, which setup checks); a member that stalls is reported when the caller's deadline passes. Each
// throws PeerLost naming the member; the caller turns it into its own error. Every member must run the same
// exchanges in the same order, each with the same byte count (a differing count is an error naming both).
// One thread uses an exchange at a time. Torch-free.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "shared_memory_segment.h"

namespace partita::detail {

class SharedMemoryExchange {
 public:
  static constexpr size_t kDefaultSlotBytes = size_t{2} << 20;

  // Member 0: makes a segment for `members` members of `slot_bytes` each (a multiple of 64) under a new
  // random name, its memory reserved up front (a full /dev/shm is a failure here, not a SIGBUS later).
  // Returns nullptr with the reason in `why` when this host cannot.
  static std::unique_ptr<SharedMemoryExchange> create(int members, size_t slot_bytes, std::string& why);
  // Members 1..: maps the segment `name` made by member 0; nullptr with `why` unless it carries `token`.
  static std::unique_ptr<SharedMemoryExchange> join(const std::string& name, uint64_t token, int member,
                                                    std::string& why);
  ~SharedMemoryExchange();  // leaves: a member waiting for this one fails at once
  SharedMemoryExchange(const SharedMemoryExchange&) = delete;
  SharedMemoryExchange& operator=(const SharedMemoryExchange&) = delete;

  const std::string& name() const { return segment_->name(); }
  uint64_t token() const { return segment_->header().token; }
  int members() const { return static_cast<int>(segment_->header().members); }
  int member() const { return member_; }
  // Removes the segment's name once every member has joined (the mappings stay). Idempotent.
  void unlink() noexcept { segment_->unlink(); }

  // Every member hands in `bytes` bytes at `data`. For each round, consume(offset, length, chunks) gets
  // chunks[m] = member m's bytes [offset, offset + length), valid during the call only; one round of length
  // 0 when bytes is 0 (a barrier). Throws PeerLost when a member is lost or `deadline` passes while
  // waiting, partita::Error when the members' byte counts differ.
  using Consume =
      std::function<void(size_t offset, size_t length, const std::vector<const uint8_t*>& chunks)>;
  void exchange(const void* data, size_t bytes, std::chrono::steady_clock::time_point deadline,
                const Consume& consume) {
    exchange({Piece{data, bytes}}, deadline, consume);
  }
  // The same with this member's bytes in pieces, handed in as if one after another (a header and a tensor's
  // bytes travel without being packed into one buffer first).
  struct Piece {
    const void* data;
    size_t bytes;
  };
  void exchange(const std::vector<Piece>& pieces, std::chrono::steady_clock::time_point deadline,
                const Consume& consume);

 private:
  struct MemberState;  // shared_memory_exchange.cpp
  SharedMemoryExchange(std::unique_ptr<SharedSegment> segment, int member);
  MemberState& state(int member) const;
  uint8_t* slot(int member) const;
  void wait_until(int member, bool for_read, uint32_t target, std::chrono::steady_clock::time_point deadline);
  void publish(bool read, uint32_t value);

  std::unique_ptr<SharedSegment> segment_;
  int member_;
  uint32_t round_ = 0;  // rounds done (the same on every member)
};

}  // namespace partita::detail

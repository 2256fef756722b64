#include "shared_memory_exchange.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "partita/core/error.h"

namespace partita::detail {

namespace {

constexpr uint64_t kMagic = 0x7061727469746131ULL;  // "partita1"

bool reached(uint32_t value, uint32_t target) { return static_cast<int32_t>(value - target) >= 0; }

size_t states_offset() { return align_up(sizeof(SegmentHeader), 128); }

}  // namespace

// One member's published state, on a cache line pair of its own.
struct alignas(128) SharedMemoryExchange::MemberState {
  std::atomic<uint32_t> written;   // the last round whose chunk is in the slot
  std::atomic<uint32_t> read;      // the last round whose chunks this member has consumed
  std::atomic<uint32_t> sleepers;  // members sleeping on this member's words
  Presence presence;
  std::atomic<uint64_t> bytes;  // the byte count of its current exchange
};

namespace {

size_t slots_offset(int members) {
  // MemberState: 128 bytes (checked in state())
  return align_up(states_offset() + 128 * static_cast<size_t>(members), 4096);
}

size_t segment_bytes(const SegmentHeader& h) {
  return slots_offset(static_cast<int>(h.members)) + h.unit_bytes * h.members;
}

}  // namespace

SharedMemoryExchange::MemberState& SharedMemoryExchange::state(int m) const {
  static_assert(sizeof(MemberState) == 128, "the segment layout assumes this size");
  return reinterpret_cast<MemberState*>(segment_->at(states_offset()))[m];
}

uint8_t* SharedMemoryExchange::slot(int m) const {
  const SegmentHeader& h = segment_->header();
  return segment_->at(slots_offset(static_cast<int>(h.members)) + static_cast<size_t>(m) * h.unit_bytes);
}

SharedMemoryExchange::SharedMemoryExchange(std::unique_ptr<SharedSegment> segment, int member)
    : segment_(std::move(segment)), member_(member) {
  MemberState& me = state(member_);
  me.presence.pid.store(static_cast<int32_t>(getpid()));
  // Joining late or again: continue from the rounds the others count (0 in a fresh segment).
  round_ = me.written.load();
}

std::unique_ptr<SharedMemoryExchange> SharedMemoryExchange::create(int members, size_t slot_bytes,
                                                                   std::string& why) {
  PARTITA_ASSERT(members >= 2 && slot_bytes > 0 && slot_bytes % 64 == 0,
                 "bad shared-memory exchange: ", members, " members of ", slot_bytes, " bytes");
  SegmentHeader h{};
  h.members = static_cast<uint32_t>(members);
  h.unit_bytes = slot_bytes;
  auto segment = SharedSegment::create(kMagic, members, slot_bytes, segment_bytes(h), why);
  if (!segment) return nullptr;
  return std::unique_ptr<SharedMemoryExchange>(new SharedMemoryExchange(std::move(segment), 0));
}

std::unique_ptr<SharedMemoryExchange> SharedMemoryExchange::join(const std::string& name, uint64_t token,
                                                                 int member, std::string& why) {
  auto segment = SharedSegment::join(kMagic, name, token, member, segment_bytes, why);
  if (!segment) return nullptr;
  return std::unique_ptr<SharedMemoryExchange>(new SharedMemoryExchange(std::move(segment), member));
}

SharedMemoryExchange::~SharedMemoryExchange() {
  MemberState& me = state(member_);
  me.presence.gone.store(1);
  wake_all(me.written);
  wake_all(me.read);
  if (member_ == 0) unlink();
}

void SharedMemoryExchange::publish(bool read, uint32_t value) {
  MemberState& me = state(member_);
  std::atomic<uint32_t>& word = read ? me.read : me.written;
  word.store(value);  // sequentially consistent with the sleepers count (see wait_for)
  wake(word, me.sleepers);
}

void SharedMemoryExchange::wait_until(int member, bool for_read, uint32_t target,
                                      std::chrono::steady_clock::time_point deadline) {
  MemberState& peer = state(member);
  std::atomic<uint32_t>& word = for_read ? peer.read : peer.written;
  wait_for([&] { return reached(word.load(std::memory_order_acquire), target); }, word, peer.sleepers,
           {{member, &peer.presence}}, deadline);
}

namespace {

// Copies bytes [offset, offset + length) of the pieces, taken one after another, to `to`.
void copy_range(const std::vector<SharedMemoryExchange::Piece>& pieces, size_t offset, size_t length,
                uint8_t* to) {
  size_t start = 0;  // of the current piece
  for (const auto& p : pieces) {
    if (length == 0) break;
    if (offset < start + p.bytes) {
      const size_t from = offset - start;
      const size_t n = std::min(p.bytes - from, length);
      std::memcpy(to, static_cast<const uint8_t*>(p.data) + from, n);
      to += n;
      offset += n;
      length -= n;
    }
    start += p.bytes;
  }
}

}  // namespace

void SharedMemoryExchange::exchange(const std::vector<Piece>& pieces,
                                    std::chrono::steady_clock::time_point deadline, const Consume& consume) {
  size_t bytes = 0;
  for (const Piece& p : pieces) bytes += p.bytes;
  const SegmentHeader& h = segment_->header();
  const int n = static_cast<int>(h.members);
  const size_t slot_bytes = h.unit_bytes;
  const size_t rounds = bytes == 0 ? 1 : (bytes + slot_bytes - 1) / slot_bytes;
  MemberState& me = state(member_);
  std::vector<const uint8_t*> chunks(static_cast<size_t>(n));
  for (size_t r = 0; r < rounds; ++r) {
    const uint32_t round = round_ + 1;
    // My slot is free once every other member has consumed the previous round.
    for (int m = 0; m < n; ++m)
      if (m != member_) wait_until(m, /*for_read=*/true, round - 1, deadline);
    const size_t offset = r * slot_bytes;
    const size_t length = std::min(slot_bytes, bytes - offset);
    copy_range(pieces, offset, length, slot(member_));
    me.bytes.store(bytes);
    publish(/*read=*/false, round);
    for (int m = 0; m < n; ++m) {
      if (m != member_) {
        wait_until(m, /*for_read=*/false, round, deadline);
        const uint64_t theirs = state(m).bytes.load();
        PARTITA_CHECK(theirs == bytes, "shared-memory exchange: member ", m, " handed in ", theirs,
                      " bytes, member ", member_, " ", bytes, "; the processes run different collectives");
      }
      chunks[static_cast<size_t>(m)] = slot(m);
    }
    consume(offset, length, chunks);
    publish(/*read=*/true, round);
    round_ = round;
  }
}

}  // namespace partita::detail

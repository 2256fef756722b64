#include "shared_memory_mailbox.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "partita/core/error.h"

namespace partita::detail {

namespace {

constexpr uint64_t kMagic = 0x7061727469746132ULL;  // "partita2"

constexpr size_t kFrameBytes = 16;  // int64 tag, uint64 length

size_t states_offset() { return align_up(sizeof(SegmentHeader), 128); }

}  // namespace

// One member's bells, on a cache line pair of its own. `arrived` rings when a message's bytes arrive in
// one of its incoming rings, `freed` when a receiver frees room in (or reads to the end of) one of its
// outgoing rings. Both ring when a member leaves.
struct alignas(128) SharedMemoryMailbox::MemberState {
  std::atomic<uint32_t> arrived;
  std::atomic<uint32_t> arrived_sleepers;
  std::atomic<uint32_t> freed;
  std::atomic<uint32_t> freed_sleepers;
  Presence presence;
};

// The counts of bytes written to and read from one ring so far, on cache lines of their own.
struct SharedMemoryMailbox::Ring {
  alignas(128) std::atomic<uint64_t> written;
  alignas(128) std::atomic<uint64_t> read;
};

namespace {

size_t rings_offset(int members) {
  return states_offset() + 128 * static_cast<size_t>(members);  // MemberState: 128 bytes (checked in state())
}

size_t ring_count(int members) { return static_cast<size_t>(members) * static_cast<size_t>(members - 1); }

size_t data_offset(int members) { return align_up(rings_offset(members) + 256 * ring_count(members), 4096); }

size_t segment_bytes(const SegmentHeader& h) {
  const int n = static_cast<int>(h.members);
  return data_offset(n) + h.unit_bytes * ring_count(n);
}

// The index of ring from -> to among a member count's rings.
size_t ring_index(int members, int from, int to) {
  return static_cast<size_t>(from) * static_cast<size_t>(members - 1) +
         static_cast<size_t>(to < from ? to : to - 1);
}

}  // namespace

size_t SharedMemoryMailbox::default_ring_bytes(int members) {
  const size_t per_member = size_t{4} << 20;
  const size_t ring = per_member / static_cast<size_t>(std::max(1, members - 1));
  return std::max<size_t>(size_t{256} << 10, ring / 4096 * 4096);
}

SharedMemoryMailbox::MemberState& SharedMemoryMailbox::state(int m) const {
  static_assert(sizeof(MemberState) == 128 && sizeof(Ring) == 256, "the segment layout assumes these sizes");
  return reinterpret_cast<MemberState*>(segment_->at(states_offset()))[m];
}

SharedMemoryMailbox::Ring& SharedMemoryMailbox::ring(int from, int to) const {
  return reinterpret_cast<Ring*>(segment_->at(rings_offset(members())))[ring_index(members(), from, to)];
}

uint8_t* SharedMemoryMailbox::ring_data(int from, int to) const {
  return segment_->at(data_offset(members()) + ring_index(members(), from, to) * ring_bytes());
}

SharedMemoryMailbox::SharedMemoryMailbox(std::unique_ptr<SharedSegment> segment, int member)
    : segment_(std::move(segment)), member_(member), sources_(static_cast<size_t>(members())) {
  for (int m = 0; m < members(); ++m) destinations_.push_back(std::make_unique<Destination>());
  state(member_).presence.pid.store(static_cast<int32_t>(getpid()));
}

std::unique_ptr<SharedMemoryMailbox> SharedMemoryMailbox::create(int members, size_t ring_bytes,
                                                                 std::string& why) {
  PARTITA_ASSERT(members >= 2 && ring_bytes >= kFrameBytes && ring_bytes % 64 == 0,
                 "bad shared-memory mailbox: ", members, " members, rings of ", ring_bytes, " bytes");
  SegmentHeader h{};
  h.members = static_cast<uint32_t>(members);
  h.unit_bytes = ring_bytes;
  auto segment = SharedSegment::create(kMagic, members, ring_bytes, segment_bytes(h), why);
  if (!segment) return nullptr;
  return std::unique_ptr<SharedMemoryMailbox>(new SharedMemoryMailbox(std::move(segment), 0));
}

std::unique_ptr<SharedMemoryMailbox> SharedMemoryMailbox::join(const std::string& name, uint64_t token,
                                                               int member, std::string& why) {
  auto segment = SharedSegment::join(kMagic, name, token, member, segment_bytes, why);
  if (!segment) return nullptr;
  return std::unique_ptr<SharedMemoryMailbox>(new SharedMemoryMailbox(std::move(segment), member));
}

SharedMemoryMailbox::~SharedMemoryMailbox() {
  stop_.store(true);
  MemberState& me = state(member_);
  if (writer_.joinable()) {
    me.freed.fetch_add(1);
    wake_all(me.freed);
    writer_.join();
  }
  me.presence.gone.store(1);
  for (int m = 0; m < members(); ++m) {
    if (m == member_) continue;
    MemberState& other = state(m);
    other.arrived.fetch_add(1);
    wake_all(other.arrived);
    other.freed.fetch_add(1);
    wake_all(other.freed);
  }
  if (member_ == 0) unlink();
}

void SharedMemoryMailbox::ring_bell(std::atomic<uint32_t>& bell, std::atomic<uint32_t>& sleepers) {
  bell.fetch_add(1);  // after the state it rings for changed; sequentially consistent (see wait_for)
  wake(bell, sleepers);
}

size_t SharedMemoryMailbox::free_bytes(int to) const {
  const Ring& r = ring(member_, to);
  return ring_bytes() - static_cast<size_t>(r.written.load(std::memory_order_relaxed) -
                                            r.read.load(std::memory_order_acquire));
}

size_t SharedMemoryMailbox::write_some(int to, Outgoing& message) {
  Ring& r = ring(member_, to);
  const size_t size = ring_bytes();
  const size_t n = std::min(free_bytes(to), message.total() - message.done);
  if (n == 0) return 0;
  uint8_t* data = ring_data(member_, to);
  const uint64_t written = r.written.load(std::memory_order_relaxed);
  // The message's bytes [done, done + n): frame first, then data; each piece may wrap around the ring.
  size_t at = static_cast<size_t>(written % size);
  const auto put = [&](const uint8_t* from, size_t bytes) {
    while (bytes > 0) {
      const size_t piece = std::min(bytes, size - at);
      std::memcpy(data + at, from, piece);
      from += piece;
      bytes -= piece;
      at = (at + piece) % size;
    }
  };
  size_t done = message.done;
  const size_t end = done + n;
  if (done < kFrameBytes) {
    const size_t piece = std::min(end, kFrameBytes) - done;
    put(message.frame + done, piece);
    done += piece;
  }
  if (done < end) put(message.data + (done - kFrameBytes), end - done);
  message.done = end;
  r.written.store(written + n, std::memory_order_release);
  MemberState& receiver = state(to);
  ring_bell(receiver.arrived, receiver.arrived_sleepers);
  return n;
}

void SharedMemoryMailbox::send(int to, int64_t tag, const void* data, size_t bytes,
                               std::shared_ptr<const void> keep) {
  PARTITA_ASSERT(to >= 0 && to < members() && to != member_, "mailbox member ", member_, " sends to ", to);
  Destination& d = *destinations_[static_cast<size_t>(to)];
  std::unique_lock lock(d.mutex);
  if (!d.lost.empty()) throw PeerLost(to, d.lost);
  if (state(to).presence.gone.load() != 0) throw PeerLost(to, "it left the exchange");
  Outgoing message;
  const uint64_t length = bytes;
  std::memcpy(message.frame, &tag, 8);
  std::memcpy(message.frame + 8, &length, 8);
  message.data = static_cast<const uint8_t*>(data);
  message.bytes = bytes;
  if (d.queue.empty()) write_some(to, message);
  if (message.done == message.total()) return;
  if (!keep) {  // keep a copy of the bytes not written yet
    const size_t from = message.done > kFrameBytes ? message.done - kFrameBytes : 0;
    auto copy = std::make_shared<std::vector<uint8_t>>(message.data + from, message.data + bytes);
    message.data = copy->data();
    message.bytes -= from;
    message.done -= from;
    keep = std::move(copy);
  }
  message.keep = std::move(keep);
  d.queue.push_back(std::move(message));
  lock.unlock();
  if (!writer_.joinable()) writer_ = std::thread([this] { write_queued(); });
  MemberState& me = state(member_);
  ring_bell(me.freed, me.freed_sleepers);
}

void SharedMemoryMailbox::write_queued() {
  MemberState& me = state(member_);
  while (!stop_.load()) {
    // Watch the receivers that queued bytes wait for; go on when one of them has room, or that set changes.
    std::vector<std::pair<int, const Presence*>> watched;
    for (int to = 0; to < members(); ++to) {
      if (to == member_) continue;
      Destination& d = *destinations_[static_cast<size_t>(to)];
      std::lock_guard lock(d.mutex);
      if (!d.queue.empty()) watched.emplace_back(to, &state(to).presence);
    }
    const auto ready = [&] {
      if (stop_.load()) return true;
      size_t waiting = 0;
      for (int to = 0; to < members(); ++to) {
        if (to == member_) continue;
        Destination& d = *destinations_[static_cast<size_t>(to)];
        std::lock_guard lock(d.mutex);
        if (d.queue.empty()) continue;
        ++waiting;
        if (free_bytes(to) > 0) return true;
      }
      return waiting != watched.size();
    };
    try {
      wait_for(ready, me.freed, me.freed_sleepers, watched, std::chrono::steady_clock::time_point::max());
    } catch (const PeerLost& lost) {
      Destination& d = *destinations_[static_cast<size_t>(lost.member)];
      {
        std::lock_guard lock(d.mutex);
        d.lost = lost.what();
        d.queue.clear();
      }
      ring_bell(me.freed, me.freed_sleepers);  // a wait_delivered() learns of it
      continue;
    }
    for (int to = 0; to < members(); ++to) {
      if (to == member_) continue;
      Destination& d = *destinations_[static_cast<size_t>(to)];
      std::lock_guard lock(d.mutex);
      while (!d.queue.empty()) {
        Outgoing& front = d.queue.front();
        write_some(to, front);
        if (front.done < front.total()) break;
        d.queue.pop_front();
      }
    }
  }
}

size_t SharedMemoryMailbox::wait_readable(int from, size_t at_least,
                                          std::chrono::steady_clock::time_point deadline) {
  const Ring& r = ring(from, member_);
  const auto readable = [&] {
    return static_cast<size_t>(r.written.load(std::memory_order_acquire) -
                               r.read.load(std::memory_order_relaxed));
  };
  MemberState& me = state(member_);
  wait_for([&] { return readable() >= at_least; }, me.arrived, me.arrived_sleepers,
           {{from, &state(from).presence}}, deadline);
  return readable();
}

void SharedMemoryMailbox::read_out(int from, uint8_t* into, size_t bytes) {
  Ring& r = ring(from, member_);
  const size_t size = ring_bytes();
  const uint8_t* data = ring_data(from, member_);
  const uint64_t read = r.read.load(std::memory_order_relaxed);
  size_t at = static_cast<size_t>(read % size);
  for (size_t left = bytes; left > 0;) {
    const size_t piece = std::min(left, size - at);
    std::memcpy(into, data + at, piece);
    into += piece;
    left -= piece;
    at = (at + piece) % size;
  }
  r.read.store(read + bytes, std::memory_order_release);
  MemberState& sender = state(from);
  ring_bell(sender.freed, sender.freed_sleepers);
}

void SharedMemoryMailbox::receive(int from, int64_t tag, void* into, size_t bytes,
                                  std::chrono::steady_clock::time_point deadline) {
  PARTITA_ASSERT(from >= 0 && from < members() && from != member_, "mailbox member ", member_,
                 " receives from ", from);
  Source& in = sources_[static_cast<size_t>(from)];
  if (in.broken) throw PeerLost(from, "an earlier message from it was cut off");
  const auto check_length = [&](size_t length) {
    PARTITA_CHECK(length == bytes, "a message from member ", from, " with tag ", tag, " has ", length,
                  " bytes where ", bytes, " were expected; the processes disagree on what they exchange");
  };
  for (auto k = in.kept.begin(); k != in.kept.end(); ++k) {
    if (k->first != tag) continue;
    check_length(k->second.size());
    if (bytes > 0) std::memcpy(into, k->second.data(), bytes);
    in.kept.erase(k);
    return;
  }
  try {
    for (;;) {
      if (!in.inside) {
        wait_readable(from, kFrameBytes, deadline);
        uint8_t frame[kFrameBytes];
        read_out(from, frame, kFrameBytes);
        uint64_t length = 0;
        std::memcpy(&in.tag, frame, 8);
        std::memcpy(&length, frame + 8, 8);
        in.length = static_cast<size_t>(length);
        in.got = 0;
        in.inside = true;
        if (in.tag == tag) {
          check_length(in.length);
          in.into = static_cast<uint8_t*>(into);
        } else {
          in.buffer.assign(in.length, 0);
          in.into = in.buffer.data();
        }
      }
      while (in.got < in.length) {
        const size_t n = std::min(wait_readable(from, 1, deadline), in.length - in.got);
        read_out(from, in.into + in.got, n);
        in.got += n;
      }
      in.inside = false;
      if (in.tag == tag) return;
      in.kept.emplace_back(in.tag, std::move(in.buffer));
      in.buffer.clear();
    }
  } catch (...) {
    in.broken = in.inside;  // the rest of a message cannot be told from the next one's frame
    throw;
  }
}

void SharedMemoryMailbox::wait_delivered(std::chrono::steady_clock::time_point deadline) {
  MemberState& me = state(member_);
  for (int to = 0; to < members(); ++to) {
    if (to == member_) continue;
    Destination& d = *destinations_[static_cast<size_t>(to)];
    const Ring& r = ring(member_, to);
    std::string lost;
    wait_for(
        [&] {
          std::lock_guard lock(d.mutex);
          lost = d.lost;
          return !lost.empty() || (d.queue.empty() && r.read.load() == r.written.load());
        },
        me.freed, me.freed_sleepers, {{to, &state(to).presence}}, deadline);
    if (!lost.empty()) throw PeerLost(to, lost);
  }
}

}  // namespace partita::detail

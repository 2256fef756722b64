#pragma once
// Point-to-point messages between the processes of one host through a /dev/shm segment, for the pipeline
// stages and branch devices of a multi-process job on one machine: Gloo's loopback TCP took 0.5-1.1 ms per
// small message on the 2-core development VM, a futex round trip 2-7 us (shared_memory_exchange.h).
//
// The segment (shared_memory_segment.h) holds a byte ring per ordered pair of members, written only by the
// sender and read only by the receiver; each side publishes how many bytes it has written / read so far. A
// message is a 16-byte frame (its tag and length) followed by its bytes, streamed through the ring: a
// message longer than the ring passes in pieces as the receiver reads. Messages from one member arrive in
// the order it sent them; receive() asks for one tag and keeps the messages of other tags it meets first
// (copied out of the ring) for the receives that ask for them, so equal tags match in order, as in Gloo.
//
// Sends never wait for the receiver, as Gloo's do not: the bytes that do not fit in the ring at once wait in
// the sender's queue (the caller's buffer is kept, not copied), and a thread of the mailbox, started at the
// first such send, writes them as the receiver frees room. wait_delivered() waits until every receiver read
// everything. So a schedule that cannot deadlock over Gloo cannot here either.
//
// Failure model, as the exchange's: a member that leaves (its mailbox is destroyed) is seen at once, one
// whose process exits within 50 ms, one that stalls when the caller's deadline passes; each throws PeerLost
// naming it. Bytes a lost member wrote before it left are still delivered. One thread sends, receives and
// waits; the mailbox's own thread only writes queued bytes. Torch-free.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shared_memory_segment.h"

namespace partita::detail {

class SharedMemoryMailbox {
 public:
  // The ring bytes per ordered pair for `members` members: 4 MiB of outgoing rings per member, at least 256
  // KiB per ring.
  static size_t default_ring_bytes(int members);

  // Member 0: makes a segment for `members` members with rings of `ring_bytes` (a multiple of 64) under a
  // new random name. nullptr with the reason in `why` when this host cannot.
  static std::unique_ptr<SharedMemoryMailbox> create(int members, size_t ring_bytes, std::string& why);
  // Members 1..: maps the segment `name` made by member 0; nullptr with `why` unless it carries `token`.
  static std::unique_ptr<SharedMemoryMailbox> join(const std::string& name, uint64_t token, int member,
                                                   std::string& why);
  ~SharedMemoryMailbox();  // leaves (queued bytes are dropped): a member waiting for this one fails at once
  SharedMemoryMailbox(const SharedMemoryMailbox&) = delete;
  SharedMemoryMailbox& operator=(const SharedMemoryMailbox&) = delete;

  const std::string& name() const { return segment_->name(); }
  uint64_t token() const { return segment_->header().token; }
  int members() const { return static_cast<int>(segment_->header().members); }
  int member() const { return member_; }
  size_t ring_bytes() const { return segment_->header().unit_bytes; }
  void unlink() noexcept { segment_->unlink(); }  // once every member has joined; idempotent

  // Posts `bytes` bytes at `data` to member `to` under `tag` and returns. `keep` owns them: it is held until
  // they are written (null: the bytes that must wait are copied). Throws PeerLost when the mailbox's thread
  // found `to` lost earlier or `to` left.
  void send(int to, int64_t tag, const void* data, size_t bytes, std::shared_ptr<const void> keep = nullptr);
  // Blocks until the first message from `from` with `tag` that no earlier receive took is here and copies
  // it into `into`. Throws partita::Error when it does not hold exactly `bytes` bytes, PeerLost when `from`
  // is lost or `deadline` passes first.
  void receive(int from, int64_t tag, void* into, size_t bytes,
               std::chrono::steady_clock::time_point deadline);
  // Blocks until every member has read everything this one sent. Throws PeerLost naming a receiver that was
  // lost first (also one the mailbox's thread found lost) or did not read by `deadline`.
  void wait_delivered(std::chrono::steady_clock::time_point deadline);

 private:
  struct MemberState;  // shared_memory_mailbox.cpp
  struct Ring;
  struct Outgoing {  // a message, or the rest of one, waiting for room in a ring
    uint8_t frame[16];
    const uint8_t* data = nullptr;
    size_t bytes = 0;
    size_t done = 0;  // frame bytes, then data bytes, written so far
    std::shared_ptr<const void> keep;
    size_t total() const { return sizeof frame + bytes; }
  };
  struct Destination {
    std::mutex mutex;
    std::deque<Outgoing> queue;
    std::string lost;  // why the mailbox's thread gave up on this member
  };
  struct Source {  // the message being read from one member, and the ones kept for later receives
    bool inside = false;
    int64_t tag = 0;
    size_t length = 0;
    size_t got = 0;
    uint8_t* into = nullptr;
    std::vector<uint8_t> buffer;
    std::deque<std::pair<int64_t, std::vector<uint8_t>>> kept;
    bool broken = false;  // a receive failed inside a message: the stream cannot be read on
  };

  SharedMemoryMailbox(std::unique_ptr<SharedSegment> segment, int member);
  MemberState& state(int member) const;
  Ring& ring(int from, int to) const;
  uint8_t* ring_data(int from, int to) const;
  size_t write_some(int to, Outgoing& message);  // writes what fits; returns the bytes written
  size_t free_bytes(int to) const;
  size_t wait_readable(int from, size_t at_least, std::chrono::steady_clock::time_point deadline);
  void read_out(int from, uint8_t* into, size_t bytes);
  void write_queued();  // the mailbox's thread
  static void ring_bell(std::atomic<uint32_t>& bell, std::atomic<uint32_t>& sleepers);

  std::unique_ptr<SharedSegment> segment_;
  int member_;
  std::vector<std::unique_ptr<Destination>> destinations_;  // per member
  std::vector<Source> sources_;                             // per member
  std::atomic<bool> stop_{false};
  std::thread writer_;  // started at the first send that must wait
};

}  // namespace partita::detail

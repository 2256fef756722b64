#pragma once
// One process's membership in a c10d ProcessGroupGloo: the TCPStore rendezvous (rank 0 hosts it at
// MASTER_ADDR:MASTER_PORT unless torchrun's agent already does) and bounded collectives. Every collective and
// store operation waits at most DistributedEnv::timeout. When a collective fails (a peer died: its
// connections close at once; a peer stalled: the timeout passes), the error names the peer rank(s) that did
// not reach this step, read from per-rank progress marks in the store ("rank 1 did not reach step 7 (last
// seen at step 6)"); when the store itself is gone, it names rank 0, its host. Point-to-point messages (for
// pipeline stages in different processes) are bounded the same way and name their peer. Not thread-safe: one
// thread uses a group at a time.
//
// Ranks on one host: all-reduces (when every rank is on it) and a subgroup's all-gathers (when its members
// are) go through a shared-memory segment instead of Gloo's loopback TCP (shared_memory_exchange.h; set up
// at construction and in add_subgroup, where every member maps the segment or all use Gloo); so do
// point-to-point messages when every rank is on it (shared_memory_mailbox.h, set up at construction).
// Measured on the 2-core VM: docs/benchmarks.md, "Collectives through shared memory".
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "partita/runtime/distributed_env.h"

namespace partita {

// How far rank 0's clock is ahead of this rank's (microseconds; 0 on rank 0), from the store round trip with
// the shortest time (the estimate is off by at most half of it).
struct ClockOffset {
  double offset_us = 0;
  double round_trip_us = 0;
};

class DistributedGroup {
  struct Impl;  // the connection to the store and the process groups (distributed_group.cpp)

 public:
  // Collective: every rank of `env` must construct its group. Throws partita::Error when the rendezvous does
  // not complete within env.timeout.
  explicit DistributedGroup(const DistributedEnv& env);
  ~DistributedGroup();
  DistributedGroup(const DistributedGroup&) = delete;
  DistributedGroup& operator=(const DistributedGroup&) = delete;

  int rank() const;
  int world_size() const;
  // Whether allreduce_sum (all ranks) / all_gather over `subgroup` go through shared memory: the ranks are
  // on one host and DistributedEnv::shared_memory is on. Otherwise through Gloo.
  bool shares_memory() const;
  bool subgroup_shares_memory(int subgroup) const;
  // Whether send/receive go through shared memory (every rank on this host, shared_memory on).
  bool messages_share_memory() const;
  // Records that this rank reached `step` (for other ranks' failure messages).
  void mark_step(int step);
  // Sums each tensor over all ranks, in place (issued together, then waited on). CPU tensors. On failure
  // throws partita::Error naming the step, `what` and the rank(s) at fault.
  void allreduce_sum(std::vector<torch::Tensor>& tensors, int step, const std::string& what);
  // Every rank waits for the others (e.g. before rank 0, the store's host, exits).
  void barrier(const std::string& what);
  // Collectives among some ranks only (a tensor-parallel group of a multi-process job): a process group of
  // its own over `ranks` (world ranks, ascending, this one among them), joined through the rendezvous store.
  // Collective over its members, which must add their subgroups in the same order; the others add none.
  // Returns its index for all_gather. Throws partita::Error when a member does not join within the timeout.
  int add_subgroup(const std::vector<int>& ranks);
  // Every member of `subgroup` hands in `tensor` (one shape and dtype on all; CPU); returns each member's, in
  // the subgroup's rank order (this rank's own included: through shared memory `tensor` itself). Bounded by
  // the timeout; on failure throws partita::Error naming the step, `what` and the rank(s) at fault.
  std::vector<torch::Tensor> all_gather(int subgroup, const torch::Tensor& tensor, int step,
                                        const std::string& what);
  // The same, each member's tensor preceded by a tag of its own (a tensor-parallel collective's key, so that
  // members at different collectives are told apart); `tags` gets every member's, in the same order. Through
  // shared memory the tag and the tensor's bytes go straight into the segment (no message packed first).
  std::vector<torch::Tensor> all_gather_tagged(int subgroup, uint64_t tag, const torch::Tensor& tensor,
                                               std::vector<uint64_t>& tags, int step,
                                               const std::string& what);
  // Point to point (CPU tensors). `tag` >= 0 tells apart messages between the same two ranks that may be in
  // flight together; messages with equal tags are matched in order. send() posts the message and returns (the
  // tensor is kept until delivered); wait_sends() waits until `to` received every posted message.
  // receive() blocks until the message arrives; `into` must have its size and dtype. Every wait is bounded by
  // the timeout. On failure throws partita::Error "<what>: <the peer's own error, or that it died or
  // stalled>".
  void send(const torch::Tensor& tensor, int to, int tag, const std::string& what);
  void wait_sends();
  void receive(torch::Tensor& into, int from, int tag, const std::string& what);
  // Rank 0 gets every rank's `text` posted under `key` (its own included), in rank order; the other ranks
  // post theirs and get an empty vector. Through the rendezvous store: for small reports, not tensors. Waits
  // are bounded by the timeout; throws partita::Error naming a rank that never posted.
  std::vector<std::string> gather_to_rank0(const std::string& key, const std::string& text);
  // Every rank gets rank 0's `text` posted under `key` (the others' `text` is ignored). Through the store,
  // like gather_to_rank0: for small messages; `key` must be new to the job. Waits are bounded by `timeout`
  // (default: the group's) and throw partita::Error naming rank 0 when it never posts.
  std::string broadcast_from_rank0(const std::string& key, const std::string& text,
                                   std::optional<Seconds> timeout = std::nullopt);

  // A connection of its own to the rendezvous store, for one other thread: a checkpoint written in the
  // background gathers its ranks' shard descriptions through one while the group's thread goes on training
  // (the group's own store connection would make each wait for the other). Not thread-safe itself.
  class StoreChannel {
   public:
    ~StoreChannel();
    StoreChannel(const StoreChannel&) = delete;
    StoreChannel& operator=(const StoreChannel&) = delete;
    // As DistributedGroup::gather_to_rank0 (keys are shared with the group's: use keys of their own).
    std::vector<std::string> gather_to_rank0(const std::string& key, const std::string& text);

   private:
    friend class DistributedGroup;
    StoreChannel();
    std::unique_ptr<Impl> impl_;
  };
  // Not collective; throws partita::Error when the store cannot be reached within the timeout. The channel
  // must not outlive the group (rank 0's group may host the store).
  std::unique_ptr<StoreChannel> open_store_channel() const;
  // Collective: each rank asks rank 0 for its clock `rounds` times through the store (rank 0 answers the
  // ranks in turn) and returns the offset of the fastest round trip, Cristian-style: rank 0's reading minus
  // the midpoint of this rank's readings before and after. `now_us` reads the clock to align (the steady
  // clock the trace uses). Waits are bounded by the timeout; throws partita::Error naming the peer.
  ClockOffset clock_offset_to_rank0(const std::function<double()>& now_us, int rounds = 8);
  // Tells the other ranks this one failed with `message` (best effort; never throws).
  void report_failure(const std::string& message) noexcept;

 private:
  // all_gather and all_gather_tagged (tag and tags null: untagged).
  std::vector<torch::Tensor> gather(int subgroup, const uint64_t* tag, const torch::Tensor& tensor,
                                    std::vector<uint64_t>* tags, int step, const std::string& what);

  std::unique_ptr<Impl> impl_;
};

}  // namespace partita

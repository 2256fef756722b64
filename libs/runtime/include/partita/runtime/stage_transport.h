#pragma once
// Pipeline stages in different processes: what the engine sends between them (a stage's activations forward,
// the gradients of those activations back, per microbatch) and how it crosses a DistributedGroup's
// point-to-point messages (shared memory between the ranks of one host, else c10d Gloo).
//
// Wire format of one message (the values one stage sends another for one microbatch and direction): an int64
// header of known length (1 + 11 per value: total payload bytes, then per value its kind, dtype or scalar,
// rank and up to 8 sizes), then, when it is not empty, one uint8 payload with the tensors' bytes in order.
// The receiver knows how many values to expect from the routing, so it can post the header's receive first.
// Values may be tensors (any dtype, any device: they travel through the host), None (an undefined tensor: a
// gradient that was not computed), ints, doubles, bools, and lists and tuples of them (pickled: their bytes
// in the payload, their tensors arriving on the host).
#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "partita/runtime/distributed_group.h"
#include "partita/search/plan.h"

namespace partita {

// Which message: what stage `from` sends stage `to` for one microbatch, forward (activations) or backward
// (the gradients of activations `to` sent `from` earlier). A pipeline sends one message per stage pair,
// microbatch and direction (transfer -1). A branch plan sends one per value handed over: `transfer` is the
// branch runner's index of that hand-over (the same in every process), since a device reads the values
// another one sends it in its own node order, not in the order they were sent.
struct StageMessage {
  int from = 0;
  int to = 0;
  int microbatch = 0;
  bool backward = false;
  int transfer = -1;
};

// One process's link to the pipeline stages that run in other processes. The engine calls it from the
// thread that runs its local stage: begin_step(), then sends and receives in schedule order, then
// finish_step(). Implementations throw partita::Error naming the peer when a message cannot be delivered.
class StageTransport {
 public:
  virtual ~StageTransport() = default;
  virtual void begin_step(int step) = 0;
  // Posts `values` as message `message`. May return before its receiver has them.
  virtual void send(const std::vector<c10::IValue>& values, const StageMessage& message) = 0;
  // Blocks until the matching send() arrives; it holds `count` values. Tensors arrive on the host.
  virtual std::vector<c10::IValue> receive(const StageMessage& message, size_t count) = 0;
  // Waits until every message this process posted in the step was received.
  virtual void finish_step() = 0;
};

// Stage s runs on rank stage_ranks[s] of a DistributedGroup (rank s when none are given). Each message
// (header and payload) has its own tag, from (stage pair, microbatch, direction, part). Every wait is
// bounded by the group's timeout. begin_step() applies the fault test hooks (see distributed_reducer.h), at
// the start of engine step K.
class DistributedStageTransport final : public StageTransport {
 public:
  // `group` must outlive the transport. `stage_ranks`: see set_stage_ranks.
  explicit DistributedStageTransport(DistributedGroup& group, std::vector<int> stage_ranks = {});
  // The rank that runs each stage from now on (a rebalanced pipeline whose stages changed processes): a
  // permutation of the group's ranks, or empty for rank s running stage s. Between steps only. Throws
  // partita::Error for a list that is not a permutation of the ranks.
  void set_stage_ranks(std::vector<int> stage_ranks);
  int rank_of(int stage) const;
  int stage_run_by(int rank) const;  // the inverse of rank_of
  void begin_step(int step) override;
  void send(const std::vector<c10::IValue>& values, const StageMessage& message) override;
  std::vector<c10::IValue> receive(const StageMessage& message, size_t count) override;
  void finish_step() override;

 private:
  DistributedGroup& group_;
  std::vector<int> stage_ranks_;  // empty: stage s on rank s
  std::string describe(const StageMessage& message, bool sending) const;
};

// The rank that runs each stage of `plan` when the job's processes keep their devices: rank r holds
// `rank_devices[r]` (the devices of stage r of the plan the job started with) and runs whichever stage of
// `plan` has those devices. Throws partita::Error when a stage's devices are not one rank's (a plan that
// would move a process to another device).
std::vector<int> stage_ranks_by_device(const Plan& plan,
                                       const std::vector<std::vector<std::string>>& rank_devices);

// The wire format, exposed for tests.
struct EncodedValues {
  torch::Tensor header;   // int64, stage_message_header_length(values) elements
  torch::Tensor payload;  // uint8, header[0] bytes
};
int64_t stage_message_header_length(size_t count);
// Throws partita::Error for a value of another kind (an object, a dict) or a tensor of rank > 8.
EncodedValues encode_stage_message(const std::vector<c10::IValue>& values);
std::vector<c10::IValue> decode_stage_message(const torch::Tensor& header, const torch::Tensor& payload);
// The c10d tag of part `part` (0 header, 1 payload) of a message. Pipeline messages and branch transfers
// have tags of their own ranges. Throws partita::Error beyond 256 stages, 65536 transfers or 4096
// microbatches.
int stage_message_tag(const StageMessage& message, int part);

}  // namespace partita

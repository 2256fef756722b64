#pragma once
// Internal to the engine: runs every plan with a tensor-parallel group on the engine's worker threads, one
// per device, Megatron-style: one stage on one kTensor group (R replicas of T-way tensor groups,
// DeviceGroup::tensor_size; R = 1 is plain tensor parallelism), or a pipeline whose stages are such groups,
// data-parallel groups (replicas of one device) or single devices (the planner's hybrid plans). Which tensors
// are split and how each device runs each node: tensor_shards.h (the planner's TensorModel pairs).
//
// Every device of a tensor group runs every node of every microbatch on its replica's share of the
// microbatch, each on its parts of the split weights and tensors, through the worker's executor one node at a
// time. Replicas are data-parallel: their gradients add up in the parameters' .grad (the engine's mean loss
// over the global batch makes that the one-device gradient). Collectives go through an
// in-process exchange keyed by (microbatch, node or value, kind), so devices meet at the same collective
// whatever order their threads reach it in; each device sums the parts in device order, so replicated values
// are bitwise the same on every device:
//  - forward: a row-split matmul's or a vocabulary lookup's partial output is all-reduced (its backward
//    passes the gradient through); a split graph output is gathered (its backward keeps this device's part);
//  - backward (training): a replicated tensor entering a split node gets its gradient all-reduced (the
//    device computed only the part through its shard);
//  - parameters: a weight read only as one split is, on each device, a leaf of its own for the step (a view
//    of the parameter's rows or columns, a copy for blocks), whose gradient the device writes into its place
//    in the parameter's .grad after its last backward of the step; a weight read split in several ways is
//    read through views of the parameter (its gradient lands in the one .grad through autograd); a
//    replicated parameter read by replicated nodes passes its gradient on the first device only (every
//    device computes the same one).
// Training: each device computes the loss on the gathered output (the same on all) and runs backward on its
// own thread; each replica's first device adds its share of the step's loss. One forward and one backward
// TaskEvent per device and microbatch.
// Pipelines: every stage runs its forwards and backwards in the plan's schedule (GPipe or 1F1B, schedule.h,
// as the pipeline engine does; the board needs no other order). A value
// crossing a cut (it must not be split: a cut inside a pair is refused) is posted by each replica's first
// device on a board the devices of the receiving stage read (as a leaf in training; a copy where a node
// there updates it in place): where the two stages' devices hold different samples, a batch-major value as
// the rows each replica holds (hybrid_crossable values only), any other value whole from the first replica.
// Gradients come back the same way from the receiving replicas' first devices (rows put together, zeros
// where none was computed; a value sent whole gets their sum), and every device of the sending stage runs
// backward from its own copy with them.
// Several processes, two ways (TensorRunnerScope): one stage (a tensor group or replicas of it) with one
// process per device (local_device, link); or a pipeline with one process per stage (local_stage,
// transport), the stage's devices inside its process. Then the stage's first device alone talks to the other
// processes: one message per stage pair, microbatch and direction, holding the board entries the other
// stage reads (forward: each value as every sending replica posted it, None where no one reads it; backward:
// every receiving replica's gradient of each value, None where it computed none), so the board works as in
// one process.
// Memory: a stage with Checkpointing::kFull runs its first forward without autograd (its collectives too)
// and keeps nothing but what it sent (without history); its backward collects the gradients for those,
// runs the forward again with autograd (collectives keyed apart from the first pass's) and goes back through
// it. A stage with activation offload runs the forward autograd records inside an ActivationOffloadScope
// (activation_offload.h), keeping its parameters, weight parts and received values where they are. The
// parameters of a tensor group are read by all its devices and so stay on the host (as optimizer-state
// offload has them).
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "partita/runtime/activation_offload.h"
#include "partita/runtime/device_binding.h"
#include "partita/runtime/engine.h"
#include "partita/runtime/loss.h"
#include "partita/runtime/observer.h"
#include "partita/runtime/stage_routing.h"
#include "partita/runtime/stage_transport.h"
#include "partita/runtime/tensor_group_link.h"
#include "partita/search/plan.h"
#include "partita/torch_bridge/executor.h"
#include "partita/torch_bridge/model.h"
#include "spin_condition.h"
#include "tensor_shards.h"

namespace partita::detail {

// Every device hands in its part of a collective under one key and gets all parts back, in device order.
// In one process the devices meet in a keyed slot, in whatever order their threads get there. With a link
// (each device in a process of its own) every device reaches the group's collectives in one order (the same
// nodes in the same schedule); each part travels with its key, and a device that reached another
// collective is an error naming both.
class PartExchange {
 public:
  explicit PartExchange(int size, TensorGroupLink* link = nullptr, const Graph* graph = nullptr)
      : size_(size), link_(link), graph_(graph) {}
  // Blocks until every device handed in its part for `key`; throws ExchangeAborted after abort().
  std::vector<torch::Tensor> all_parts(uint64_t key, int device, torch::Tensor part);
  void abort();
  void reset(int step);  // before a step

 private:
  std::vector<torch::Tensor> linked_parts(uint64_t key, int device, const torch::Tensor& part);
  struct Slot {
    std::vector<torch::Tensor> parts;
    int arrived = 0;
    int taken = 0;
  };
  int size_;
  TensorGroupLink* link_;
  const Graph* graph_;  // with a link: names collectives in errors
  int step_ = 0;
  std::mutex mutex_;
  SpinCondition cv_;
  std::map<uint64_t, Slot> slots_;
  bool aborted_ = false;
};

// Thrown by a collective after another worker failed (a std::exception: it may cross autograd's engine).
struct ExchangeAborted : std::exception {
  const char* what() const noexcept override { return "another device of the tensor-parallel group failed"; }
};

// A worker's executors, over the same parameters (replay_draws.h): `own` draws the random numbers of nodes
// whose output is split, `group` those of replicated nodes (seeded alike on every rank of the group).
struct TensorExecutors {
  const Executor& own;
  const Executor& group;
};

// What of the plan runs in this process: all of it (the default), one device of a one-stage plan, or one
// stage of a pipeline.
struct TensorRunnerScope {
  int local_device = -1;  // >= 0: this device of the one stage's group; the group's others through `link`
  TensorGroupLink* link = nullptr;
  int local_stage = -1;  // >= 0: every device of this stage; the other stages through `transport`
  StageTransport* transport = nullptr;
};

class TensorRunner {
 public:
  // Checks the graph can be split each stage's way (plan_tensor_shards), that what crosses a cut is whole
  // (not split), and precomputes releases. `bindings` are the plan's devices in the engine's worker order
  // (stage by stage, each group in order); `observers` is the engine's list (read at every step). Throws
  // partita::Error.
  // With `scope.local_device` >= 0 (a one-stage plan), this process runs only that device of the stage's
  // group (`bindings` holds its one binding) and meets the other devices of its tensor group, which run in
  // other processes, through `scope.link`; each process's parameter gradients then hold what that device
  // contributes (its parts; a replicated parameter's whole gradient on its replica's first device only),
  // which the engine's reducer sums over the processes as one process's devices sum them into .grad.
  // With `scope.local_stage` >= 0, this process runs that stage's devices (`bindings` holds theirs) and
  // exchanges what crosses its cuts with the other stages' processes through `scope.transport`; its
  // parameter gradients hold its stage's (the reducer sums the loss and parameters several stages read).
  TensorRunner(const LoadedModel& model, const Plan& plan, bool training, LossKind loss,
               const std::vector<DeviceBinding>& bindings, const std::vector<RuntimeObserver*>& observers,
               TensorRunnerScope scope = {});

  // One device per process (scope.local_device) of one tensor group without replicas: the parameters every
  // node reads as the same split, of which this process needs only its device's part (Megatron's memory
  // layout). Elsewhere none.
  struct HeldPart {
    size_t parameter = 0;  // index into LoadedModel::parameters
    Shard shard;
  };
  const std::vector<HeldPart>& held_parts() const { return held_parts_; }
  // Between steps: gives those parameters (`params`: LoadedModel::parameters, the engine's; and what
  // `optimizer` keeps for them, when it has something, and their gradients) this device's part only, or
  // back the whole (hold_whole: a collective over the link, every device of the group at the same `step`).
  // Each does nothing when already so.
  void hold_parts(const std::vector<torch::Tensor>& params, torch::optim::Optimizer* optimizer);
  void hold_whole(const std::vector<torch::Tensor>& params, torch::optim::Optimizer* optimizer, int step);
  bool holding_parts() const { return holding_parts_; }

  void begin_step(const StepInputs& batch, int step);
  // Runs engine worker `worker`'s part of the step (its stage; in the stage's group replica device / T,
  // tensor rank device % T) on the calling thread with `executors` (the worker's); adds the loss to `loss` on
  // the last stage's first device of each replica. Returns false when another worker failed and abort() was
  // called; throws partita::Error naming the stage, device and node when this one fails.
  bool run(int worker, const TensorExecutors& executors, double& loss);
  // Training: what activation offload copied to host memory during the last step, per worker.
  OffloadedActivations offloaded(int worker) const { return offloaded_.at(static_cast<size_t>(worker)); }
  void abort();
  // Inference: the graph's tensor outputs for the whole batch (after a successful step); with a local
  // device, for its replica's samples. The runner keeps no reference to them afterwards: the step's outputs
  // live as long as the caller holds them.
  std::vector<torch::Tensor> take_outputs();

 private:
  // A parameter one device reads only as its part: the part, a leaf of its own for the step.
  struct OwnPart {
    torch::Tensor parameter;  // the executor's
    torch::Tensor leaf;
  };
  struct StageInfo {
    NodeId first = 0, last = 0;
    int degree = 1;                                        // devices per tensor group (1: a one-device stage)
    std::vector<int> replica_offset, replica_share;        // [replica] its samples of each microbatch
    std::vector<std::unique_ptr<PartExchange>> exchanges;  // [replica]; each of the degree
    const TensorShardPlan* shards = nullptr;               // into shard_plans_
  };
  // Where a worker is: its stage, rank in its tensor group, replica.
  struct Place {
    int worker = 0, stage = 0, rank = 0, replica = 0, degree = 1;
  };
  struct Sent {
    int to_stage = 0;
    ValueId value = 0;
    torch::Tensor tensor;  // this device's own copy, with its history
  };
  struct Received {
    ValueId value = 0;
    torch::Tensor leaf;
  };
  // Per microbatch, what a device keeps from its forward for its backward.
  struct MicrobatchState {
    torch::Tensor loss;                // last stage
    std::vector<Sent> sent;            // to later stages
    std::vector<Received> received;    // leaves of what earlier stages sent
    std::vector<torch::Tensor> draws;  // checkpointed: the generators' state before the forward
  };
  // (microbatch, value, receiving stage, posting replica)
  using BoardKey = std::tuple<int, ValueId, int, int>;
  // Values posted once and read by every device of a stage (keyed by microbatch, value and stage).
  class Board {
   public:
    void put(const BoardKey& key, c10::IValue item);
    c10::IValue get(const BoardKey& key);  // blocks until posted; throws ExchangeAborted after abort()
    void abort();
    void reset();

   private:
    std::mutex mutex_;
    SpinCondition cv_;
    std::map<BoardKey, c10::IValue> slots_;
    bool aborted_ = false;
  };
  static BoardKey board_key(int microbatch, ValueId value, int to_stage, int replica);
  // Whether stages `from` and `to` hold different samples per device (either has replicas): batch-major
  // values then cross by rows.
  bool resharded(int from, int to) const;
  bool by_rows(int from, int to, ValueId v) const;

  Place place_of(int worker) const;
  // Pipelines across processes (scope_.local_stage): whether stage `s` runs in another process, and what
  // the local stage's first device exchanges with those processes before and after its forward (values)
  // or backward (their gradients) of microbatch m: it puts what arrives on the board and sends what the
  // stage's replicas posted there.
  bool remote(int s) const { return scope_.local_stage >= 0 && s != scope_.local_stage; }
  void receive_remote(int stage, int m, bool backward);
  void send_remote(int stage, int m, bool backward);
  // `recompute`: a checkpointed stage's second forward, run by its backward (keeps what backward needs, posts
  // nothing to later stages).
  void forward(const Place& at, const TensorExecutors& ex, int m, MicrobatchState& state,
               std::map<ValueId, OwnPart>& parts, bool recompute);
  void backward(const Place& at, const TensorExecutors& ex, int m, MicrobatchState& state,
                std::map<ValueId, OwnPart>& parts, double& loss);
  c10::IValue rewrite(const Place& at, int m, const Node& node, size_t input, const c10::IValue& value,
                      std::map<ValueId, torch::Tensor>& entered, std::map<ValueId, OwnPart>& parts) const;

  const LoadedModel& model_;
  const Plan& plan_;
  bool training_;
  LossKind loss_kind_;
  std::vector<DeviceBinding> bindings_;
  const std::vector<RuntimeObserver*>& observers_;
  TensorRunnerScope scope_;
  StageRouting routing_;
  std::map<int, TensorShardPlan> shard_plans_;  // by degree
  std::vector<StageInfo> stages_;
  std::vector<int> worker_stage_, worker_device_;    // [worker] its stage, its index in the stage's group
  std::vector<std::vector<ValueId>> release_after_;  // [node] values its stage no longer needs after it
  std::vector<bool> trainable_;                      // [value] a parameter that needs a gradient
  std::vector<std::optional<Shard>> own_part_;       // [value] a trainable parameter read only as this split
  std::vector<std::optional<Shard>> held_part_;      // [value] one of held_parts_
  std::vector<HeldPart> held_parts_;
  bool holding_parts_ = false;  // held_parts_ are this device's parts (hold_parts)
  bool held(ValueId v) const { return holding_parts_ && held_part_[static_cast<size_t>(v)].has_value(); }
  std::mutex gradient_mutex_;
  std::vector<OffloadedActivations> offloaded_;  // [worker], this step's
  Board values_, gradients_;                     // between stages: forward values, their gradients

  const StepInputs* batch_ = nullptr;
  int step_ = 0;
  // [microbatch][replica][graph output], from each replica's first device of the last stage
  std::vector<std::vector<std::vector<torch::Tensor>>> outputs_;
};

}  // namespace partita::detail

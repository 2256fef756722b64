#pragma once
// Internal to the engine: runs branch-parallel plans (Plan::branch_layout(), StrategyKind::kBranch), where
// every stage is one device with an explicit node list, on the engine's worker threads (one per stage).
//
// Forward: each device runs its list in order for every microbatch. The list is cut into segments at the
// nodes that need a value produced on another device; a segment starts by waiting for those values (one
// mailbox slot per (microbatch, value, consumer device), filled by the producer right after the producing
// node, moved with .to(device)) and then runs without waiting (one forward TaskEvent per segment). Values are
// released at their last use on the device; a value that some node updates in place is cloned when it
// crosses devices (the other device must see it as it was produced).
//
// Training: every segment is an autograd island, like a pipeline stage: tensors that enter it from another
// device or from an earlier segment of the same device are detached into leaves. Training also cuts a segment
// after every node whose output goes to another device, so a segment's backward waits only for the gradients
// of what it sent last: the part of a device's list after a send runs its backward while the other device is
// still working out that send's gradient (before, the whole segment waited, and branch plans' backwards
// alternated between the devices: branchy's 2-device training step 58 ms against the simulator's 47 ms,
// whose per-node backward assumes exactly this overlap). Backward runs segment by
// segment in reverse on each device's own worker (in parallel across devices): a segment's roots are the
// tensors it sent to other devices (seeded with the gradients they send back), the tensors later segments of
// its device detached (seeded with those leaves' gradients) and, on the device that computes the graph
// output, the loss; afterwards the gradients of its received leaves go back to their producers. Parameter
// gradients accumulate into the shared parameter tensors as in the data-parallel layout. Microbatches: all
// forwards, then all backwards (GPipe), in the same microbatch order on every device, so no device waits on
// one that waits on it.
// Several processes (BranchRunnerScope): each process runs one stage; a value handed to or from a stage in
// another process travels through the StageTransport as a message of its own (one per transfer, microbatch
// and direction), sent where the in-process runner fills the mailbox and received where it takes from it,
// so the waits are the same and no process waits on one that waits on it. Such a value may be a tensor, a
// number, None or a list or tuple of them. It arrives on the host and is moved to the device; in training
// every floating-point tensor in it becomes a leaf (the receiver cannot tell which carried history), and
// the gradient message back holds one entry per tensor of the value (None where there is none). The loss
// and the gradients of parameters several stages read are summed over the processes by the engine's
// reducer, as for pipelines across processes.
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "partita/runtime/device_binding.h"
#include "partita/runtime/engine.h"
#include "partita/runtime/loss.h"
#include "partita/runtime/observer.h"
#include "partita/runtime/stage_transport.h"
#include "partita/search/plan.h"
#include "partita/torch_bridge/executor.h"
#include "partita/torch_bridge/model.h"
#include "spin_condition.h"

namespace partita::detail {

// Which stages this process runs: all of them (local_stage -1), or one, the others in other processes
// reached through `transport`.
struct BranchRunnerScope {
  int local_stage = -1;
  StageTransport* transport = nullptr;
};

class BranchRunner {
 public:
  // Checks the plan (one device per stage; node lists that cannot deadlock; in-place updates ordered after
  // every other reader on the same device) and precomputes segments, transfers and releases. `bindings` are
  // the stages' devices in stage order (only the local stage's with scope.local_stage); `observers` is the
  // engine's list (read at every step). Throws partita::Error.
  BranchRunner(const LoadedModel& model, const Plan& plan, bool training, LossKind loss,
               const std::vector<DeviceBinding>& bindings, const std::vector<RuntimeObserver*>& observers,
               BranchRunnerScope scope = {});

  // Before the workers start a step (on the caller's thread).
  void begin_step(const StepInputs& batch, int step);
  // Runs stage `stage` (forwards, then backwards when training) for the step on the calling thread with
  // `executor` (the worker's, on the stage's device); adds the loss it computes (if any) to `loss`. Returns
  // false when another worker failed and abort() was called; throws partita::Error naming the stage, device
  // and node when this stage fails.
  bool run(int stage, int worker, const Executor& executor, double& loss);
  // Wakes every waiting worker (they return false from run()).
  void abort();
  // Inference: the graph's flattened tensor outputs for the whole batch (after a successful step); with a
  // local stage, those of the outputs that stage computes. The runner keeps no reference to them afterwards:
  // the step's outputs live as long as the caller holds them.
  std::vector<torch::Tensor> take_outputs();

  struct Transfer {
    ValueId value = 0;
    int from = 0;
    int to = 0;
    bool clone = false;  // some node updates the value in place
  };
  struct Segment {
    size_t begin = 0, end = 0;  // positions in the stage's node list
    std::vector<int> receive;   // transfers first needed here (waited for at the segment's start)
    // Training: values of earlier segments of this stage first used here, with their producing segment.
    std::vector<std::pair<ValueId, int>> detach;
  };
  struct StagePlan {
    std::vector<NodeId> nodes;
    std::vector<Segment> segments;
    std::vector<std::vector<int>> send_after;         // [position] transfers of that node's outputs
    std::vector<std::vector<ValueId>> release_after;  // [position] values whose last use on this stage it is
    std::vector<int> outputs;                         // graph output indices this stage produces
    int loss_position = -1;                           // training: where the first graph output is produced
  };

 private:
  template <typename T>
  class Mailbox {
   public:
    void reset(size_t slots);
    void put(size_t slot, T item);
    // Blocks until the slot is filled; throws Aborted after abort().
    T take(size_t slot);
    void abort();

   private:
    std::mutex mutex_;
    SpinCondition cv_;
    std::vector<std::optional<T>> slots_;
    bool aborted_ = false;
  };
  struct Aborted {};
  struct SegmentState;
  struct MicrobatchState;

  void forward(int stage, int worker, const Executor& executor, int microbatch, MicrobatchState& state);
  void backward(int stage, int worker, int microbatch, MicrobatchState& state, double& loss);
  // Stage `stage`'s part of user input `input` for a microbatch: its rows, or a shared input whole.
  torch::Tensor slice(const torch::Tensor& t, size_t input, int stage, int microbatch) const;
  // Whether `stage` runs in another process.
  bool remote(int stage) const { return scope_.local_stage >= 0 && stage != scope_.local_stage; }
  const DeviceBinding& binding(int stage) const;
  // Transfer t as a transport message.
  StageMessage message(int t, int microbatch, bool backward) const;

  const LoadedModel& model_;
  const Plan& plan_;
  bool training_;
  LossKind loss_kind_;
  std::vector<DeviceBinding> bindings_;
  const std::vector<RuntimeObserver*>& observers_;
  BranchRunnerScope scope_;
  std::vector<Transfer> transfers_;
  std::vector<StagePlan> stages_;
  std::vector<bool> mutated_;  // [value]

  const StepInputs* batch_ = nullptr;
  int step_ = 0;
  Mailbox<c10::IValue> values_;                    // [microbatch * transfers + transfer]
  Mailbox<std::vector<torch::Tensor>> gradients_;  // same slots, from consumer back to producer
  std::vector<std::vector<std::vector<torch::Tensor>>> outputs_;  // [microbatch][graph output] flattened
};

}  // namespace partita::detail

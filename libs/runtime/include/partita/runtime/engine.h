#pragma once
// The engine: executes a Plan with LibTorch on this machine, one worker thread per plan device.
//
// Supported layouts (others are refused with an error before anything runs):
//  - pipeline: every stage on a one-device group; activations flow between stage workers per microbatch,
//    gradients flow back; schedule GPipe or 1F1B as the plan says;
//  - data parallel: one stage on a group of devices with integer batch shares; each device runs the whole
//    graph on its share of every microbatch. Replicas on the host share the weight tensors and autograd sums
//    their gradients into them (an in-memory all-reduce); replicas on a GPU hold copies whose gradients are
//    reduced into the host copy after backward.
//  - hybrid: a pipeline whose stages are groups of devices with their own batch shares (one process). Each
//    device of a stage runs the stage on its share of every microbatch, as a replica does, and hands each
//    device of a later stage the samples both hold (rows of dimension 0; a value not derived from the batch
//    comes from the group's first device); gradients return the same way. A cut carrying another
//    batch-dependent value (a batch size as a number, a list of tensors) is refused naming it.
//  - branch parallel (Plan::branch_layout()): every stage is one device running its explicit node list in
//    order; a node whose input comes from another device waits for that value (moved there with .to()), and
//    values are released at their last use on the device. Training detaches every value that enters a run of
//    nodes from another device or an earlier run into a leaf and runs backward run by run in reverse on each
//    device's own worker, gradients flowing back across devices (see src/engine_branch.h); microbatches
//    run all forwards, then all backwards. One forward/backward TaskEvent per run of nodes between waits.
//  - tensor parallel: one stage on one kTensor group, possibly replicas of T-way tensor groups (data parallel
//    between them, each its share of every microbatch), or a pipeline whose stages are tensor groups,
//    replicas of them, data-parallel groups or single devices (GPipe or 1F1B; what crosses a cut is never
//    split across a tensor group): every device of a tensor group runs its stage's nodes with its parts of
//    the split weights and tensors (Megatron pairs, heads, vocabulary rows; see src/engine_tensor.h and
//    src/tensor_shards.h), all-reducing partial sums and gathering a split output in process; a graph with an
//    op on a split tensor that the engine cannot split is refused before running.
// Memory: a stage with Checkpointing::kFull keeps only its inputs per microbatch; its forward runs without
// autograd and again, with autograd, right before its backward (tensor groups too: src/engine_tensor.h). A
// stage with activation offload (offloads_activations; never with checkpointing: Plan::check_against refuses
// the pair) runs its forward and, on the last stage, the loss inside an ActivationOffloadScope
// (activation_offload.h): what autograd saves goes to host memory as it is saved (pinned and asynchronous
// from a GPU; on a CPU device a second host copy, which saves nothing) and comes back when backward needs it;
// parameters and values received from other stages stay. StepResult::offloaded counts it per stage. Optimizer
// state: a training stage on one device with memory of its own keeps the parameters only it reads, with their
// optimizer state, on that device, and the one optimizer updates them there; parameters several workers read
// (replicas, shared weights), those the reducer combines with other processes, and those of a stage with
// optimizer-state offload stay on the host, the device holding copies whose gradients are gathered to the
// host and which are refreshed after the update. Inference plans with offload are refused (a training
// choice). Math: a training step computes the mean loss over the global batch and one optimizer step, exactly
// as a single-device step does (up to floating-point reassociation of the gradient sums). The optimizer step
// runs on the workers, not on the caller's thread, which partita's commands keep at one intra-op thread: in
// one process, with every device of the plan a CPU and an SGD, Adam or AdamW optimizer, split among the
// workers of the plan's distinct devices, each stepping its share of the parameters at once (bit for bit the
// whole optimizer's step; src/optimizer_parts.h, shares by cost/update.h split_update as the simulator
// predicts); otherwise on the CPU worker with the most intra-op threads (its thread, binding and OpenMP team;
// of equals, the one least slowed in the plan's source.device_slowdowns, as the simulator assumes). Errors:
// an exception in any worker stops the step (every other worker is woken) and step() throws partita::Error
// naming the stage, the device and the node. Several processes: with EngineOptions::local_replica set, this
// engine runs one replica of a one-stage data-parallel plan (the other replicas run in other processes, see
// distributed_reducer.h) and EngineOptions::reducer combines the gradients and the loss across processes
// before the optimizer step. The same for one device of a one-stage tensor-parallel plan (a tensor group or
// replicas of it, one process per device): it meets the other devices of its tensor group through
// EngineOptions::tensor_link. Without replicas, each process keeps only its device's parts of the weights
// read as one split, with their gradients and optimizer state (Megatron's layout; hold_whole_model()), and
// the reducer sums the other parameters' gradients. With replicas, every process holds the whole model and
// the reducer sums what each device contributes to every gradient (its parts; zeros elsewhere): a gradient
// all-reduce of the whole model per step, as data parallelism does, and every process takes the same
// optimizer step. With EngineOptions::local_stage set, it runs one stage of a pipeline or hybrid plan (the
// other stages run in other processes): the same schedule, with activations and gradients crossing
// EngineOptions::transport (see stage_transport.h) as whole microbatches; a stage on several devices runs
// them all in this process, its first device's worker alone exchanging messages with the other processes (it
// hands the others their rows and puts theirs together, as in-process hybrid links do device by device; a
// stage that is a tensor group, or replicas of one, runs in this process as one process runs it, its first
// device exchanging the tensor runner's board entries with the other processes, engine_tensor.h). The reducer
// sums the loss (computed by the last stage) and the gradients of parameters that several stages use, and
// each process steps the parameters of its stage (the others get no gradient there). Inference outputs are
// returned only by the process that runs the last stage. A branch plan runs the same way, one stage per
// process, each value one device hands another in a process of its own crossing the transport as a message of
// its own (src/engine_branch.h); its inference outputs come from the processes whose stages compute them.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

namespace torch::optim {
class Optimizer;
}

#include "partita/cost/memory.h"
#include "partita/runtime/activation_offload.h"
#include "partita/runtime/device_binding.h"
#include "partita/runtime/draw_states.h"
#include "partita/runtime/loss.h"
#include "partita/runtime/observer.h"
#include "partita/search/plan.h"
#include "partita/torch_bridge/model.h"

namespace partita {

enum class BlasThreads {
  kAuto,   // single-threaded OpenBLAS when several CPU workers run at once or a worker has several intra-op
           // threads (they would fight over the cores); otherwise leave its pool alone
  kLeave,  // do not touch OpenBLAS's pool
  kOne,    // always single-threaded OpenBLAS during the engine's life
};
std::string_view blas_threads_name(BlasThreads policy);  // "auto", "leave", "one"

class StageTransport;   // stage_transport.h
class TensorGroupLink;  // tensor_group_link.h

// Combines what this process computed in a training step with what other processes computed. Engine::step()
// calls it after every backward of the step and before the optimizer step, on the thread that called step().
// `parameters` are the trainable parameters; their .grad() hold this process's gradient sums (undefined: this
// process computed no gradient for it, and every process must agree on which). With
// EngineOptions::local_stage, only the parameters that several stages use, every gradient defined (zeros
// where this stage computed none). `local_loss` is this process's share of the step's loss (already divided
// by the global batch). On return the gradients hold the sums over all processes; returns the step's global
// loss. `step` counts the engine's steps from 0. Throws partita::Error.
//
// Overlap with backward (optional; EngineOptions::local_replica only, host gradients): before the step's last
// backward the engine calls begin_backward(); when it returns true, autograd calls on_gradient_ready(i) (on
// the backward's thread) as soon as parameters[i]'s gradient of the step is final, and the engine then calls
// finish() instead of reduce() (or abandon() when the step failed). When it returns false, the engine calls
// reduce() after the backward as usual. Every rank must make the same choice (the reducer decides from what
// every rank agrees on: its buckets and which gradients are defined).
class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  virtual double reduce(const std::vector<torch::Tensor>& parameters, double local_loss, int step) = 0;
  // Whether overlapping can ever pay for these parameters (the engine installs gradient hooks only then).
  virtual bool can_overlap(const std::vector<torch::Tensor>& /*parameters*/) const { return false; }
  virtual bool begin_backward(const std::vector<torch::Tensor>& /*parameters*/, int /*step*/) {
    return false;
  }
  virtual void on_gradient_ready(size_t /*index*/) {}
  virtual double finish(const std::vector<torch::Tensor>& parameters, double local_loss, int step) {
    return reduce(parameters, local_loss, step);
  }
  virtual void abandon() noexcept {}
  // Whether `grad` (a parameter's .grad()) is storage the reducer keeps across steps (its buckets): the
  // engine zeroes such a gradient in place when a step starts, and sets every other one to none (as one
  // process does), so a gradient the reducer does not keep is not held through the next forward.
  virtual bool holds(const torch::Tensor& /*grad*/) const { return false; }
};

struct EngineOptions {
  LossKind loss = LossKind::kAuto;
  double learning_rate = 0.01;
  BlasThreads blas = BlasThreads::kAuto;
  // -1: run every device of the plan here. r >= 0: the plan must be one data-parallel stage; run only device
  // r of its group (its batch share at its offset; the others run in other processes on the same global
  // batch).
  int local_replica = -1;
  // -1: run every stage of the plan here. s >= 0: the plan must have several stages (a pipeline, hybrid or
  // branch plan); run only stage s (all its devices) and exchange activations and gradients with the other
  // stages through `transport`.
  int local_stage = -1;
  StageTransport* transport = nullptr;  // with local_stage; must outlive the engine
  // A one-stage tensor-parallel plan with local_replica = r: device r's link to the other devices of its
  // tensor group (its replica's devices, each in a process of its own); must outlive the engine. Its
  // parameter gradients then hold what device r contributes and `reducer` sums them over the processes.
  TensorGroupLink* tensor_link = nullptr;
  GradientReducer* reducer = nullptr;  // training only; must outlive the engine; none: nothing to combine
                                       // (required with local_stage: the loss lives on the last stage)
  // Training: the optimizer to step. Empty: the engine makes one from the plan (make_optimizer over the
  // model's trainable parameters). Given: it must own exactly those parameters, in the model's order; an
  // engine built for a new plan of the same model continues with the same optimizer state (rebalancing,
  // resuming from a checkpoint).
  std::shared_ptr<torch::optim::Optimizer> optimizer;
  // With exactly one worker (one replica of a multi-process data-parallel plan, a one-device plan), step()
  // runs it on the calling thread instead of handing it to a worker thread (two cross-thread wake-ups less
  // per step). The engine then applies the worker's DeviceBinding (core pinning, intra-op threads) to the
  // thread that calls step(), from the first step for the engine's life (the destructor restores that
  // thread's affinity and thread count when it runs on the same thread): for a thread that runs nothing
  // else while the engine lives (partita run; each of partita optimize's runs), not for one that runs other
  // work between steps. Errors, observers and traces are the same as with a worker thread. Ignored with
  // several workers.
  bool inline_lone_worker = false;
  // The number of the engine's first step (its tasks' TaskEvent::step, what the reducer and transport are
  // told): an engine that takes a run over after a rebalance goes on counting where the last one stopped.
  int first_step = 0;
  // Verification (partita verify --plan): every worker runs dropout as the identity and batch norm on its
  // running statistics (ExecutorOptions::as_in_eval_without_draws), so a plan's forward can be
  // compared exactly with one device's. Otherwise each batch share normalizes by its own statistics and
  // draws its own dropout masks, by design (as under DistributedDataParallel).
  bool as_in_eval_without_draws = false;
  // Each worker draws the model's random numbers (dropout masks, noise) from a CPU generator of its own,
  // seeded from this, its stage and replica and first_step (a GPU worker uses its device's default
  // generator, so two workers on one GPU would share it): runs are repeatable, and a checkpointed stage's
  // recompute replays its forward's draws (replay_draws.h). A checkpoint of one process keeps the
  // generators' states (draw_states; partita run restores them on resume, in one process or several).
  uint64_t random_seed = 0;
  // Test seam: CPU workers treat their memory as their own, like a GPU worker's (a stage's parameters moved
  // into fresh tensors, copies of the ones it shares, gradients gathered, copies refreshed), so those paths
  // run on machines without a GPU. Slower; never needed for real runs.
  bool cpu_parameter_copies = false;
  void validate() const;
};

struct StepInputs {
  std::vector<torch::Tensor> inputs;  // the global batch, one tensor per forward() argument
  torch::Tensor targets;              // training only; from make_targets()
};

struct StepResult {
  double loss = 0.0;                   // training: mean loss over the global batch
  std::vector<torch::Tensor> outputs;  // inference: the graph's tensor outputs for the whole batch
  // Training: per plan stage, what activation offload copied to host memory during this step (all its
  // microbatches and replicas run here); zero for stages without it and for stages other processes run.
  std::vector<OffloadedActivations> offloaded;
};

// Why this engine cannot run the plan's layout at all (activation offload in a branch-parallel plan, offload
// in an inference plan), as the one-line error the Engine constructor throws;
// nullopt when it can. Does not check the plan against a model or this machine's devices, nor whether a
// hybrid plan's cuts carry only values it can split by the batch (the constructor refuses those).
std::optional<std::string> engine_refusal(const Plan& plan);
// The same, and for a tensor-parallel plan also whether `graph` splits that way (tensor_shards.h: every op
// on a split tensor is one the engine splits, every split size divides): what the constructor refuses
// before running, for choosing among planned candidates.
std::optional<std::string> engine_refusal(const Plan& plan, const Graph& graph);
// Why the engine cannot split `graph` over a tensor-parallel group of `degree` devices (the one-line error,
// naming the node), nullopt when it can.
std::optional<std::string> tensor_parallel_refusal(const Graph& graph, int degree);

class Engine {
 public:
  // `model` must outlive the engine. Throws partita::Error for plans this engine cannot run here. The
  // process's first training engine makes partita's autograd engine the default (activation_offload.h):
  // build it before other threads of the program start running autograd.
  Engine(LoadedModel& model, Plan plan, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  StepResult step(const StepInputs& batch);
  // Observers must outlive the engine; called from worker threads.
  void add_observer(RuntimeObserver* observer);

  const Plan& plan() const;
  const std::vector<DeviceBinding>& bindings() const;
  LossKind loss_kind() const;  // resolved from the model's input and output metadata
  // Deterministic targets for a training step on `inputs` (the global batch).
  torch::Tensor make_targets(const std::vector<torch::Tensor>& inputs, uint64_t seed = 42) const;
  // The optimizer's parameters (the model's trainable tensors), for tests comparing runs. While the engine
  // lives, a training stage's own parameters are on its device (parameter_homes); the destructor moves them
  // back, keeping the tensors (and any optimizer state handed on) valid.
  std::vector<torch::Tensor> parameters() const;
  // Training: per trainable parameter (the order of parameters()), where it is kept and updated: the device
  // id of the one stage worker that reads it on memory of its own (a GPU), or "host".
  std::vector<std::string> parameter_homes() const;
  // Training: the optimizer this engine steps (shareable with a later engine); null for inference.
  std::shared_ptr<torch::optim::Optimizer> optimizer() const;
  // One device of a tensor-parallel group per process (local_replica with a tensor_link, no replicas): the
  // engine keeps only this device's parts of the weights every node reads as the same split, with their
  // gradients and optimizer state (Megatron's layout; the other parts are the other processes'), so
  // parameters() and the model hold those parts. hold_whole_model() gathers every part through the link
  // (collective: every process of the group, between the same steps), so the model and the optimizer hold
  // whole tensors (a checkpoint, a comparison); hold_own_parts() keeps the parts again. Both do nothing for
  // other plans, and a step runs either way. Returns whether the engine held parts before the call.
  bool hold_whole_model();
  void hold_own_parts();
  // Bytes of this device's weight parts (0 when it holds none).
  int64_t held_part_bytes() const;
  // The state of every random generator this engine's workers draw from (EngineOptions::random_seed), named
  // by worker (draw_states.h). restore_draw_states sets each one back from the entry of its name (a run
  // resumed from a checkpoint, on the same plan, whatever the number of processes; `states` may hold other
  // processes' too) and throws partita::Error when one is missing; positional states (a version-2
  // checkpoint) are taken in worker order and their count must match. Between steps only.
  DrawStates draw_states() const;
  void restore_draw_states(const DrawStates& states);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace partita

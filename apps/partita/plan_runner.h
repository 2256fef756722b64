#pragma once
// Runs a plan with the engine for a number of steps and reports what happened: the shared core of
// `partita run` and `partita optimize`.

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "partita/core/json_io.h"
#include "partita/core/signals.h"
#include "partita/runtime/chrome_trace.h"
#include "partita/runtime/engine.h"
#include "partita/runtime/slowdown_injector.h"
#include "partita/runtime/stage_transport.h"
#include "rebalancer.h"
#include "run_energy.h"

namespace partita {
class DistributedGroup;
class TensorGroupLink;
}  // namespace partita

namespace partita::app {

// How a run writes its checkpoints (RunOptions::checkpoint_writes).
enum class CheckpointWrites { kSynchronous, kBackground };

struct RunOptions {
  int steps = 10;
  int warmup = 2;            // steps run first and not counted
  double learning_rate = 0;  // 0: default_learning_rate of the plan's optimizer
  LossKind loss = LossKind::kAuto;
  uint64_t random_seed = 0;   // EngineOptions::random_seed
  bool record_trace = false;  // keep a Chrome trace of the counted steps
  BlasThreads blas = BlasThreads::kAuto;
  int local_replica = -1;              // multi-process data parallel: the replica this process runs
  GradientReducer* reducer = nullptr;  // and what combines it with the other processes (EngineOptions)
  // Multi-process pipeline: this process's rank, which runs stage `local_stage` of the given plan and keeps
  // that stage's devices (a resumed or rebalanced layout may give it another stage on them), and its link to
  // the other stages (EngineOptions), whose routing the run updates.
  int local_stage = -1;
  DistributedStageTransport* transport = nullptr;
  TensorGroupLink* tensor_link = nullptr;  // one device of a tensor group: its link to the others
  // A plan with one worker here runs it on the calling thread, which the engine pins to that worker's device
  // (EngineOptions::inline_lone_worker) and puts back when the run ends.
  bool inline_lone_worker = false;
  // Checkpoints (training; see partita/runtime/checkpoint.h). With a directory, `warmup` must be 0 (warm-up
  // steps train too) and `steps` is the total number of training steps of the job, resumed runs included.
  std::string checkpoint_dir;  // empty: no checkpoints
  int checkpoint_every = 0;    // save after every step number divisible by it (0: none) and after the last
  int checkpoint_keep = 1;     // the newest checkpoints kept in checkpoint_dir
  bool resume = false;         // continue from the checkpoint in checkpoint_dir (it must exist and match)
  // kBackground: the training loop only copies the state into memory and a thread of its own writes, syncs
  // and commits it while training goes on (one save at a time; the run waits for the last before it returns).
  // Across processes, a pipeline's ranks snapshot their own stage and write their shards in the background.
  CheckpointWrites checkpoint_writes = CheckpointWrites::kSynchronous;
  // Multi-process jobs (null in one process): rank 0 writes whole checkpoints (data parallel: every rank
  // holds every tensor); in a pipeline every rank writes its stage's shard and rank 0 commits them, gathered
  // through this group. Every rank reads its part on resume.
  DistributedGroup* group = nullptr;
  // Fault injection: the device of stage `inject_slowdown->stage` runs `factor` times slower from step
  // `step` on (steps counted from 0 over every step this process runs, warm-up included).
  std::optional<SlowdownSpec> inject_slowdown;
  // Dynamic rebalancing: plan again between steps when a device drifts from the plan (one process, or the
  // processes of a one-stage data-parallel plan, through `group`: the batch shares move).
  bool rebalance = false;
  RebalanceOptions rebalance_options;
  // When set and true, the run stops before its next step with an error (StopOnSignal sets it); a
  // checkpointed training run saves the steps done first. With `group`, every rank must set it (the ranks
  // agree, through one all-reduce per step, to stop before the same step when any of them was asked to).
  const std::atomic<bool>* stop_requested = nullptr;
};

// While alive, SIGINT and SIGTERM ask the run to stop before its next step (RunOptions::stop_requested)
// instead of ending the process at once, so what the caller holds is put back on the way out (power caps).
// A signal the process was started ignoring stays ignored (core/signals.h: a background job of a script
// ignores SIGINT). The previous handlers come back when it ends. One at a time per process.
class StopOnSignal {
 public:
  StopOnSignal();
  ~StopOnSignal();
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;
  const std::atomic<bool>& requested() const;

 private:
  std::optional<CatchSignal> int_;
  std::optional<CatchSignal> term_;
};

struct WorkerReport {
  std::string device;
  int stage = 0;
  double busy_ms_per_step = 0;
  double utilization = 0;        // busy / step time
  double predicted_busy_ms = 0;  // the plan's prediction for this device (0 when absent)
};

struct RunReport {
  std::vector<double> step_ms;  // every counted step
  double median_ms = 0;
  double spread_ms = 0;        // max - min of counted steps
  std::vector<double> losses;  // per counted step (training); resumed: the checkpoint's losses first
  std::string loss;            // training: the loss computed (--loss auto resolved), e.g. "cross_entropy"
  int resumed_from_step = 0;   // steps done before this run (the checkpoint's), 0 when not resumed
  // Per checkpoint this process saved: how long the training loop stood still for it (synchronous: the whole
  // save; in the background: waiting for the previous save, then copying the state).
  std::vector<double> checkpoint_stall_ms;
  std::vector<WorkerReport> workers;
  double samples_per_second = 0;
  // [stage] bytes and tensors that activation offload copied to host memory in the last counted step (all 0
  // without activation offload).
  std::vector<OffloadedActivations> offloaded;
  // Training: how many trainable parameter tensors the engine running at the end kept and updated where: a
  // device id (a GPU stage's own parameters) or "host".
  std::map<std::string, int> parameter_homes;
  // Energy per counted step of each device this process ran (run_energy.h: measured or estimated).
  std::vector<DeviceEnergy> energy;
  Json trace;                              // when record_trace
  std::vector<RebalanceEvent> rebalances;  // with RunOptions::rebalance: every drift reported
  Plan final_plan;                         // the plan running at the end (the given one unless rebalanced)
};

RunReport run_plan(LoadedModel& model, const Plan& plan, const std::vector<InputSpec>& specs,
                   const RunOptions& options);
Json run_report_to_json(const RunReport& report);

// Bytes of the model's own tensors (weights and buffers), each storage once.
Bytes model_tensor_bytes(const LoadedModel& model);
// Predicted host (CPU) memory of the plan's process: the simulator's host prediction (simulator.h) of the
// machines of the plan (one, for a plan of this machine's devices): the model's weights with the gradients
// and optimizer state the engine keeps on the host, each CPU device's activations and workspace, and in
// inference the outputs gathered at the end.
Bytes predicted_host_memory(const Plan& plan);

}  // namespace partita::app

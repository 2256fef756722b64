#pragma once
// The one options struct of the search library: what to plan for and under which limits.
#include <map>
#include <optional>
#include <string_view>

#include "partita/core/units.h"
#include "partita/cost/loss.h"
#include "partita/cost/memory.h"
#include "partita/hardware/device.h"

namespace partita {

// Inference runs forward only; training runs forward, backward, gradient all-reduce and the optimizer step.
enum class Mode { kInference, kTraining };
// What the planner minimises. kBalanced: least energy among candidates within 5 % of the fastest step time.
enum class Objective { kTime, kEnergy, kBalanced };
// Which memory a device may use: the smaller of its own and memory_limit, or memory_limit alone (what-if
// planning for devices with more memory; the planner uses it to find the smallest memory that would work).
enum class MemoryCap { kDeviceAndLimit, kLimitOnly };
// Where a plan's devices run. kOne: one process, a thread per device (what `partita run` does alone);
// devices exchange data through the cluster's links. kLaunch: the processes `partita launch -n N` runs the
// plan in (process_layout.h: one per device of a one-stage plan, one per stage otherwise); two devices of one
// machine in different processes exchange data through SearchOptions::process_links.
enum class ProcessLayout { kOne, kLaunch };
// Between two processes of one machine, alpha-beta each (search/process_layout.h).
struct ProcessLinks {
  // A message to a process asleep in its receive (a pipeline's activations and gradients, a branch plan's
  // values): its latency includes waking the receiver.
  LinkSpec message;
  // Collectives (all-reduces, a tensor group's all-gathers), whose members arrive close together and spin:
  // cost/comm.h's formulas over it (alpha per ring step).
  LinkSpec collective;
};
// Which candidate generator(s) to run. kAuto runs all that apply and picks by objective.
enum class StrategyKind { kAuto, kData, kPipeline, kHybrid, kBranch, kTensor, kEven };

std::string_view mode_name(Mode m);            // "inference", "training"
std::string_view objective_name(Objective o);  // "time", "energy", "balanced"
std::string_view strategy_name(
    StrategyKind s);  // "auto", "data", "pipeline", "hybrid", "branch", "tensor", "even"
std::string_view process_layout_name(ProcessLayout p);  // "one", "launch"
// Inverses; throw partita::Error naming the accepted spellings.
Mode parse_mode(std::string_view name);
Objective parse_objective(std::string_view name);
StrategyKind parse_strategy(std::string_view name);
ProcessLayout parse_process_layout(std::string_view name);

struct SearchOptions {
  Mode mode = Mode::kTraining;
  int global_batch = 32;  // samples per step, all devices together
  // Samples the graph's shapes (and so the cost table's times) were built for; 0: dim 0 of the batch input
  // (the first that is not shared).
  // Times and activation bytes are assumed to scale linearly with samples (roofline regime, overhead
  // ignored).
  int graph_batch = 0;
  Objective objective = Objective::kTime;
  StrategyKind strategy = StrategyKind::kAuto;
  Optimizer optimizer = Optimizer::kAdam;
  // Training: the loss `partita run` computes (kAuto resolved from the batch input and first output, as run
  // does); its targets count in the last stage's memory.
  LossKind loss = LossKind::kAuto;
  // Per-device memory cap applied on top of each device's own memory (the smaller wins); nullopt: none.
  std::optional<Bytes> memory_limit;
  MemoryCap memory_cap = MemoryCap::kDeviceAndLimit;
  // Host link used when optimizer state (each step moves it there and back) or activations (each microbatch
  // moves them there in forward and back in backward) are offloaded to host memory; bandwidth only.
  BytesPerSecond host_bandwidth{25e9};
  int max_microbatches = 64;  // upper bound on microbatches per step considered by pipeline strategies
  // When positive, every strategy uses exactly this many microbatches per step (it must divide global_batch).
  int microbatches = 0;
  int max_blocks = 256;  // the node order is grouped into at most this many blocks for partitioning
  // False for a model that computes something else when its batch is split (a traced batch size baked into
  // a reshape: torch_bridge/batch_check.h finds it by running the model at a second batch size). Plans then
  // keep every step's batch whole (Plan::splits_batch() is false: one microbatch, no data-parallel group of
  // several devices); pipelines of one microbatch, tensor and branch plans remain.
  bool batch_splittable = true;
  // Plans whose smallest data-parallel share or microbatch (Plan::smallest_share) holds fewer samples are
  // left out (graph/analysis.h's min_samples_per_share: 2 for a batch norm of [batch, channels] in train
  // mode).
  int min_batch_share = 1;
  // Keep only plans that use every device of the cluster (e.g. one process per device with partita
  // launch), even when leaving some out is predicted faster.
  bool every_device = false;
  // Move each pipeline or hybrid plan's cuts node by node while the simulator says the step gets better
  // (cut_refinement.h); false keeps the chain partitioner's cuts (to compare the two).
  bool refine_cuts = true;
  // Measured optimizer steps over all trainable parameters, keyed by DeviceSpec::name (profiled planning
  // fills it); a device without an entry is costed by optimizer_step_time (partita/cost/update.h).
  std::map<std::string, Seconds> update_times;
  // The processes candidates are planned (and plans simulated) for; a plan's own Plan::processes wins in
  // simulate(), as its mode does.
  ProcessLayout processes = ProcessLayout::kOne;
  // kLaunch: the links between two processes of one machine (measured by `partita profile`, else estimates).
  // Required to simulate a kLaunch plan.
  std::optional<ProcessLinks> process_links;

  // Throws partita::Error naming the bad field and value.
  void validate() const;
};

}  // namespace partita

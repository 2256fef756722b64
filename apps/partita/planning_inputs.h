#pragma once
// What the planner needs, built from what the user named: the graph (a TorchScript model run once on its
// input specs, or a model spec YAML built without weights), the cluster (local device ids checked against
// this machine, or a cluster file), the cost table over the cluster's specs, and default search options.
// Shared by `partita plan`, `partita simulate` (which rebuilds the same inputs from a plan's "source"
// section) and `partita optimize`.
//
// Local devices: this machine's CPU is discovered (cpu_info.h) and matched against the hardware database;
// its GPUs come from NVML (named devices matched to database profiles). The default device list is every
// core as a one-core group ("cpu:0,...,cpu:N-1") plus every GPU with a profile.
// Local CPU specs: when `partita profile` has cached a measured profile of this machine, the CPU devices take
// its measured FLOP/s, bandwidth, op overhead and efficiencies (names unchanged); otherwise the database's.
// Cost table: roofline over the cluster's specs; apply_profiled_costs replaces the local CPU rows with per-op
// times measured here (what `plan` and `optimize` do by default for a TorchScript model on local devices).
// PlanSource::cost records which one was used ("roofline" or "profiled") so a later run can tell.
#include <optional>
#include <string>
#include <vector>

#include "partita/cost/compute.h"
#include "partita/graph/graph.h"
#include "partita/hardware/device.h"
#include "partita/hardware/hardware_db.h"
#include "partita/search/plan.h"
#include "partita/search/search_options.h"
#include "partita/torch_bridge/input_spec.h"
#include "partita/torch_bridge/module_mode.h"

namespace partita {
struct LoadedModel;
}

namespace partita::app {

struct PlanningInputs {
  Graph graph;
  Cluster cluster;
  CostTable table;
  // Defaults: global_batch and graph_batch = the graph's batch; the caller sets mode, objective, strategy...
  SearchOptions options;
  // Absolute paths of what was used, for the plan's "source" section.
  PlanSource source;
  // When options.batch_splittable is false: why, naming the node (mark_batch_splittability).
  std::string batch_split_problem;
};

// The graph `source` names: load + annotate the TorchScript model at its input specs, or build the model spec
// at source.batch samples. Throws partita::Error when neither or both are given, or a file is bad.
Graph load_source_graph(const PlanSource& source);

// Cluster, cost table and options for an already built graph (e.g. a model `optimize` has loaded and
// annotated). `source` names the devices (source.devices, "" = this machine's default list) or a cluster file
// (source.cluster); both set is an error. `graph_batch`: samples the graph's shapes are for (0: dim 0 of its
// first input that is not shared).
PlanningInputs make_planning_inputs(Graph graph, PlanSource source, int graph_batch = 0);

// The mode a scripted module runs in for a plan of `mode`: torch.nn's train() for training, eval() otherwise.
inline ModuleMode module_mode(Mode mode) {
  return mode == Mode::kTraining ? ModuleMode::kTrain : ModuleMode::kEval;
}

// The TorchScript model `source` names, loaded and annotated at its input specs; for training, checked to
// have a derivative at every node (torch_bridge/gradient_check.h).
LoadedModel load_source_model(const PlanSource& source, Mode mode);

// What stops `model` (annotated at its specs) from running on part of its batch, checked for real
// (torch_bridge/batch_check.h: a node that fails at a second batch size, or moves the batch out of dim 0 and
// two halves of a batch do not give the whole batch's outputs), as one line naming the node and what to do;
// nullopt when nothing does.
std::optional<std::string> batch_split_problem(const LoadedModel& model, const std::vector<InputSpec>& specs);

// Sets in.options.batch_splittable and in.batch_split_problem from batch_split_problem at in.source.inputs.
// Call it before apply_profiled_costs.
void mark_batch_splittability(PlanningInputs& in, const LoadedModel& model);

// Measured costs for the local CPU devices of `in.cluster` (see apply_profiled_costs).
struct ProfiledCostOptions {
  Mode mode = Mode::kInference;  // training also times each node's backward
  // OpenBLAS threads while profiling: 0 = what the engine's automatic policy does for this cluster (one
  // thread when several CPU devices run at once or a device has several cores, else untouched), -1 =
  // untouched, N > 0 = N.
  int blas_threads = 0;
  // Seconds of timed repeats per node (the op profiler's budget); the whole model takes a few seconds.
  Seconds per_node_budget{0.02};
};

// Replaces the cost table rows of the local CPU devices with per-node forward (and, training, backward) times
// measured by single-op replay (torch_bridge/op_profiler.h, cached per machine), each on a thread bound like
// the engine's worker for that device (pinned core group at its thread count; the whole CPU at all cores).
// Per-call parts: when in.options.batch_splittable and the graph's batch is above one, every node is also
// measured on one sample and each node's fixed part fitted through both (cost/compute.h's
// fit_per_call_parts: a one-sample microbatch costs what it measured, not an eighth of eight samples);
// otherwise the calibrated per-call costs stay. When several CPU devices share the machine, the rows are
// scaled by a measured co-run slowdown (cost/corun.h), at each of the two batch sizes: the model's own
// forward pass (training: forward + backward) on every CPU device at once, each step started together, over
// the same on the row's device alone; the slowdown is contention (shared memory bandwidth and caches) times
// stragglers (each step waits for whichever core is slow at that moment). Sets in.table.method and
// in.source.cost to "profiled". Does nothing for described clusters (--cluster) or GPU rows. `model` must be
// the annotated model in.graph came from, in.source.inputs its input specs, and in.options.batch_splittable
// set (mark_batch_splittability). Not thread-safe (sets intra-op threads on its own threads only).
void apply_profiled_costs(PlanningInputs& in, LoadedModel& model, const ProfiledCostOptions& options);

// Applies in.source.power_caps (cap_device_power) and then in.source.device_slowdowns to the cluster and cost
// table (slow_down_device), after any profiling:
// the cost rows of those devices are stretched by their factors.
void apply_device_slowdowns(PlanningInputs& in);

// load_source_graph + make_planning_inputs; then, for a TorchScript model on local devices unless
// source.cost is "roofline", apply_profiled_costs (a --model-spec or --cluster with cost "profiled" is an
// error naming why), then apply_device_slowdowns. `mode` is what the plan is for (training profiles
// backward too); `optimizer` is the training step's (its update is timed, its state counted in memory).
PlanningInputs load_planning_inputs(const PlanSource& source, Mode mode = Mode::kInference,
                                    Optimizer optimizer = Optimizer::kAdam);

// This machine as a cluster restricted to `devices` ("cpu", "cpu:0,cpu:1", "cpu:0-1,cuda:0"; "" = the default
// list). Throws partita::Error for a malformed id, an id this machine lacks ("device cuda:0 is not here: this
// machine has cpu, cpu:0, cpu:1; describe other hardware with --cluster FILE.yaml"), a repeated id, or CPU
// groups that share cores.
Cluster local_cluster(const std::string& devices, const HardwareDb& db);

// Parses "4GiB", "4 GiB", "512MB" or a plain byte count; throws partita::Error naming the text otherwise.
Bytes parse_memory_limit(const std::string& text);

}  // namespace partita::app

#pragma once
// A Plan: how one training or inference step of a graph is spread over a cluster, and what it is predicted to
// cost. A value type; serialized as versioned JSON ("format": "partita.plan", "version": 2) by plan_json.h.
//
// Structure: the graph's node order is cut into contiguous stages [first, last]; each stage runs on one
// device group. Branch plans (StrategyKind::kBranch, inter-operator parallelism) are the one exception: every
// stage carries an explicit `nodes` list (the order its device runs them in), the lists together hold every
// node exactly once, and a stage's nodes need not be contiguous; the cross-device edges are the graph's data
// edges between nodes of different stages. Every stage of a branch plan is one single-device group. In a
// group with GroupParallelism::kData every device runs the whole stage on its own integer share of each
// microbatch (shares sum to the microbatch size) and gradients are all-reduced inside the group; with kTensor
// the devices form tensor-parallel groups of `tensor_size` consecutive devices (all of them by default): each
// such group runs its share of the microbatch and splits the big matmuls (Megatron-style), every device of it
// with that same share; several of them are data-parallel replicas (their shares sum to the microbatch size,
// the gradients of each weight shard all-reduced between the replicas). A step is
// `microbatches` microbatches of global_batch / microbatches samples, pipelined by `schedule`.
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "partita/core/units.h"
#include "partita/cost/memory.h"
#include "partita/graph/graph.h"
#include "partita/search/graph_identity.h"
#include "partita/search/search_options.h"

namespace partita {

enum class Schedule { kGPipe, kOneFOneB };
// kFull: a stage keeps only its input per microbatch and recomputes its forward during backward.
enum class Checkpointing { kNone, kFull };
// What a stage keeps in host memory instead of its device's (meaningful for devices with their own memory,
// i.e. GPUs; the planner never offloads from a CPU device):
//  - kOptimizerState: optimizer state lives in host memory; each step moves it over the host link and back;
//  - kActivations: the tensors autograd saves for backward move to host memory right after the forward saves
//    them and come back when the backward needs them (every microbatch, over the host link);
//  - kActivationsAndOptimizerState: both.
// Activation offload is not combined with full checkpointing (which keeps nothing but the stage input to
// offload); check_against refuses the pair.
enum class Offload { kNone, kOptimizerState, kActivations, kActivationsAndOptimizerState };
bool offloads_optimizer_state(Offload o);
bool offloads_activations(Offload o);
enum class GroupParallelism { kData, kTensor };

std::string_view schedule_name(Schedule s);            // "gpipe", "1f1b"
std::string_view checkpointing_name(Checkpointing c);  // "none", "full"
// "none", "optimizer_state", "activations", "activations+optimizer_state"
std::string_view offload_name(Offload o);
std::string_view group_parallelism_name(GroupParallelism g);  // "data", "tensor"
Schedule parse_schedule(std::string_view name);
Checkpointing parse_checkpointing(std::string_view name);
Offload parse_offload(std::string_view name);
GroupParallelism parse_group_parallelism(std::string_view name);

struct DeviceGroup {
  std::vector<std::string> devices;  // cluster device ids
  // Samples of each microbatch per device; kTensor: every device of a tensor-parallel group has its group's.
  std::vector<int> batch_shares;
  GroupParallelism parallelism = GroupParallelism::kData;
  int tensor_size = 0;  // kTensor: devices per tensor-parallel group (consecutive in `devices`); 0 = all

  // Devices that split one sample's matmuls: 1 for kData, tensor_size (or every device) for kTensor.
  int tensor_degree() const;
  // Data-parallel replicas: devices / tensor_degree().
  int replicas() const;
};

struct Stage {
  NodeId first = 0;  // inclusive node range in the graph's node order (branch plans: min and max of `nodes`)
  NodeId last = 0;
  int group = 0;  // index into Plan::groups
  Checkpointing checkpointing = Checkpointing::kNone;
  Offload offload = Offload::kNone;
  // Branch plans only: the nodes this stage's device runs, in execution order (a topological order of them).
  // Empty for range stages.
  std::vector<NodeId> nodes{};

  bool explicit_nodes() const { return !nodes.empty(); }
};

// Where a plan came from, so `partita simulate` (and the runtime) can rebuild the graph, cluster and cost
// table: either a TorchScript model with its input specs or a model spec with a batch, and either local
// device ids or a cluster file. Paths are absolute. Empty fields are unknown (a plan made in a test).
struct PlanSource {
  std::string model;                // TorchScript file
  std::vector<std::string> inputs;  // --input specs of `model`
  std::string model_spec;           // model spec YAML
  int batch = 0;                    // samples the model spec graph was built for
  std::string devices;              // local device list ("cpu:0,cpu:1")
  std::string cluster;              // cluster YAML
  std::string cost;                 // cost table method used: "roofline" or "profiled"
  std::optional<Bytes> memory_limit;
  // Devices planned as slower than measured or listed, by device id (see device_slowdown.h): what-if
  // planning (`partita plan --device-slowdown`) and plans remade by the runtime's rebalancer.
  std::map<std::string, double> device_slowdowns;
  // GPUs planned as power-capped, watts by device id (`partita plan --power-cap`; see device_slowdown.h's
  // cap_device_power). `partita run` does not apply them by itself: it says so when the run has no such cap.
  std::map<std::string, double> power_caps;

  bool empty() const { return model.empty() && model_spec.empty(); }
};

struct UnusedDevice {
  std::string device;
  std::string reason;
};

struct DevicePrediction {
  std::string device;
  Bytes peak_memory{0};
  Seconds busy{0};
  Joules energy{0};
  // The part of peak_memory that is the stage's model state: weights and buffers, and when training their
  // gradients and optimizer state (a tensor-parallel device: its shards and the replicated rest). CPU devices
  // of one process that run replicas of one stage share it (they train the same tensors), so a process's host
  // memory counts it once per stage, not once per device.
  Bytes model_state{0};
};

// One process of `partita launch` on a machine (Plan::processes kLaunch): its host memory at its peak.
struct ProcessPeak {
  int rank = 0;  // the launch rank (process_layout.h)
  Bytes peak_memory{0};
};

// Host (CPU) memory of one machine of the plan, as partita's engine uses it (see simulator.h for what stays
// there): one process per machine, which loads the whole model, or (Plan::processes kLaunch) the processes of
// `partita launch` that run there, each holding what its rank keeps and added together.
struct HostPrediction {
  std::string node;  // the cluster node (machine) name
  // One process: model_state + step_batch + offloaded_activations + the largest of cpu_working,
  // gathered_outputs and update_working. Several: the sum of their peaks (`processes`); the parts below are
  // their sums too.
  Bytes peak_memory{0};
  Bytes model_state{0};  // weights kept on the host, with their gradients and optimizer state
  // The step's batch beyond the rows the CPU devices' figures count: the caller makes the whole global
  // batch's inputs and, training, the loss's targets (each process of `partita launch` the same ones) and
  // keeps them all step.
  Bytes step_batch{0};
  // activations and workspace of the node's CPU devices (what they hold at once; simulator.h says how) and,
  // training, the gradients backward makes afresh before adding them into the host's (replicas, later
  // microbatches)
  Bytes cpu_working{0};
  Bytes offloaded_activations{0};  // saved activations of stages that offload them, at their peak
  Bytes gathered_outputs{0};       // inference: the step's outputs put together on the host
  Bytes capacity{0};        // the node's CPU memory in the cluster (0: the cluster describes no CPU there)
  Bytes update_working{0};  // training: the optimizer step's temporaries (optimizer_step_temporaries)
  // kLaunch: the machine's processes in rank order (empty for one process per machine).
  std::vector<ProcessPeak> processes{};
};

// "rank 0 1.84 MiB + rank 1 1.84 MiB" for a machine's processes of `partita launch`; "" for one process.
std::string process_peaks_text(const HostPrediction& host);

struct Prediction {
  Seconds step_time{0};
  double samples_per_second = 0;
  Joules energy{0};  // per step, devices in the plan (devices left out are assumed released)
  std::vector<DevicePrediction> devices;
  std::vector<HostPrediction> hosts;  // one per node that runs a device of the plan
};

struct Plan {
  GraphIdentity graph;
  Mode mode = Mode::kTraining;
  StrategyKind strategy = StrategyKind::kPipeline;
  Schedule schedule = Schedule::kOneFOneB;
  Optimizer optimizer = Optimizer::kAdam;
  LossKind loss = LossKind::kAuto;  // training: what the prediction counts; `partita run` trains with it
  // The processes the prediction is for: one (threads), or those of `partita launch` (process_layout.h).
  ProcessLayout processes = ProcessLayout::kOne;
  int global_batch = 1;
  int microbatches = 1;
  std::vector<DeviceGroup> groups;
  std::vector<Stage> stages;
  std::vector<UnusedDevice> unused_devices;
  Prediction prediction;
  PlanSource source;

  int microbatch_size() const { return global_batch / microbatches; }
  // Every device id in group order.
  std::vector<std::string> used_devices() const;
  // Each stage's group's devices, in stage order.
  std::vector<std::vector<std::string>> stage_devices() const;
  // Whether some part of the model runs on fewer samples than the step's batch: several microbatches, or a
  // data-parallel group of several devices (each its share). Tensor-parallel groups see the whole microbatch.
  bool splits_batch() const;
  // The fewest samples any device computes a microbatch on: the smallest batch share of any group (a
  // tensor-parallel group's devices each see their group's whole share).
  int smallest_share() const;
  // A few lines for people: strategy, stages with node ranges and devices, prediction.
  std::string to_string() const;
  // Throws partita::Error when the plan is malformed for `graph` (identity, ranges, shares, groups, a stage
  // combining checkpointing with activation offload).
  void check_against(const Graph& target) const;
  bool branch_layout() const { return !stages.empty() && stages.front().explicit_nodes(); }
  // Whether a stage's group splits the model's matmuls (GroupParallelism::kTensor).
  bool has_tensor_groups() const {
    for (const Stage& st : stages) {
      if (st.group >= 0 && static_cast<size_t>(st.group) < groups.size() &&
          groups[static_cast<size_t>(st.group)].parallelism == GroupParallelism::kTensor)
        return true;
    }
    return false;
  }
  // [graph parameter, in target.parameters() order] the stages whose nodes read it, ascending (range stages
  // and branch node lists alike). Where the runtime keeps a parameter follows from this.
  std::vector<std::vector<int>> parameter_stages(const Graph& target) const;

 private:
  void check_ranges(const Graph& target) const;
  void check_node_lists(const Graph& target) const;
};

// For each stage of `plan`, the index of the entry of `device_lists` that is exactly its group's devices,
// each entry taken by one stage at most (the first free one); -1 for a stage with no such entry left.
std::vector<int> stages_on_device_lists(const Plan& plan,
                                        const std::vector<std::vector<std::string>>& device_lists);

// `candidate` as a job running `current` with a process per device (one data-parallel stage) or per stage (a
// pipeline, a branch plan) can switch to it without moving a process off its devices: a one-stage
// data-parallel plan over the same devices, put back in `current`'s device order (rank r keeps device r) with
// their shares; or as many stages, range stages for a pipeline and node lists for a branch plan, whose groups
// have the devices of `current`'s stages, in any order (a stage runs in the process that holds its devices).
// nullopt for any other: tensor-parallel groups, other devices, another number of stages, a branch layout
// for a pipeline or the other way round.
std::optional<Plan> on_the_same_devices(const Plan& candidate, const Plan& current);

}  // namespace partita

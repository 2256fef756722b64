#pragma once
// Discrete-event simulation of one step of a plan: the test oracle and the final scorer of candidates.
//
// Task graph: per stage, microbatch and device of the stage's group a forward task (and, when training, a
// backward task; checkpointed stages run the forward again inside backward; stages offloading activations
// copy them to the host inside the forward and back inside the backward, StageModel::activation_transfer
// each, since the engine copies synchronously on the stage's worker); one transfer per stage boundary and
// microbatch each way; per stage with more than one device a gradient all-reduce after its last backward;
// per stage offloading optimizer state a host round trip of that state after that.
// Resources: each device runs its tasks one at a time in schedule order (GPipe: all forwards, then all
// backwards; 1F1B: stages-to-go warm-up forwards, then alternate one forward / one backward); each stage
// boundary is a full-duplex link with one lane per direction (transfers in microbatch order); each group's
// all-reduce and each host link are resources of their own. A task starts when its resource is free and its
// inputs are done. Costs come from StageModel (same model as the search) and cost/comm.h.
// Tensor-parallel groups (GroupParallelism::kTensor): every device of the group runs the whole microbatch
// with tensor_model.h's split compute and in-line all-reduces; no gradient all-reduce; one transfer lane to
// and from the group. Branch plans (explicit node lists) are simulated per node (see src/simulate_branch.h).
// Memory: parameters (+ gradients and optimizer state when training, minus what is offloaded) + workspace +
// the activations alive over time (saved at forward end, freed at backward end; with checkpointing or
// activation offload only the stage input is kept from forward end, and the activations are back on the
// device from backward start).
// Host memory (Prediction::hosts, one entry per machine of the plan; the engine runs one process per machine,
// which loads the whole model into host memory): every weight and buffer stays there except those the engine
// moves to a device (training: read by one stage of one device with memory of its own that does not offload
// its optimizer state); a trainable parameter kept on the host that a device of that machine reads has its
// gradient and optimizer state there too (replicas, tied weights, offloaded optimizer state, CPU stages).
// Beside that: the activations and workspace of the machine's CPU devices (their peaks added, an upper
// bound, in inference and with tensor-parallel devices; otherwise what they hold at once over the simulated
// timeline: training a chain plan, each forward and backward followed in kMomentsPerTask moments
// (StageModel::forward_moments), and a branch plan node by node; for a pipeline's step of
// one microbatch, whose stages run in turn, the largest stage's: in inference a later stage's with the
// step's inputs the first stage's figure counted, which the caller keeps all step; in training each stage's
// with what the earlier stages keep for their backwards, less the tensors it received from them, and with
// the gradients returned for what it sent on), the saved
// activations of stages that offload them (each device's peak over the step, added), and in inference the
// step's outputs, which the engine puts together on the last stage's machine at the end of the step (twice
// their bytes, while the pieces are alive, when they come in several pieces or from a device other than a
// CPU; the working memory is freed by then, so the larger of the two counts). A tensor-parallel group's CPU
// devices count their activations and workspace only: their weight parts are views of the host's tensors. A
// machine's capacity is its largest CPU device's memory in the cluster; a machine the cluster describes no
// CPU for is not checked. A plan that offloads from a CPU device is refused (partita::Error): its memory is
// host memory already. A plan for the processes of `partita launch` (Plan::processes kLaunch) is predicted
// per process (HostPrediction::processes; a machine's figure is their sum): every rank loads the whole model;
// a pipeline's rank then keeps only what its stage reads (a weight several stages read on each of them), a
// tensor group's rank its part of each split weight; a CPU rank keeps its gradients all step (zeroed in
// place; a one-stage plan's in the reducer's buckets), and a one-stage plan's rank adds nothing into another
// device's gradients; a tensor rank holds its peers' parts of its largest collective beside its peak and,
// training several microbatches, its split parts' own gradients beside the kept ones.
// Energy: per device in the plan, cost/energy.h's device_energy(busy, step - busy).
#include <string>
#include <vector>

#include "partita/core/json_io.h"
#include "partita/cost/compute.h"
#include "partita/hardware/device.h"
#include "partita/search/plan.h"
#include "partita/search/search_options.h"

namespace partita {

// How finely a host's figure over time follows each forward and backward of its CPU devices (see above).
inline constexpr int kMomentsPerTask = 8;

enum class TaskKind { kForward, kBackward, kTransfer, kAllReduce, kOffload, kUpdate };
// "forward", "backward", "transfer", "allreduce", "offload", "update"
std::string_view task_kind_name(TaskKind kind);

struct SimResource {
  std::string name;  // device id, "link s0->s1", "allreduce s2", "host cuda:0"
  int device = -1;   // cluster device index for devices, -1 otherwise
};

struct SimTask {
  std::string name;  // "F s1 mb3"
  TaskKind kind = TaskKind::kForward;
  int resource = 0;
  int stage = 0;
  int microbatch = -1;  // -1 for per-step tasks
  Seconds start{0};
  Seconds end{0};
};

struct Simulation {
  Seconds step_time{0};
  std::vector<SimResource> resources;
  std::vector<SimTask> tasks;
  Prediction prediction;  // step time, throughput, per-device busy, peak memory and energy
  // Whether every device's simulated peak fits its cap (min of its memory and options.memory_limit).
  bool fits_memory = true;
  std::string memory_note;  // which device exceeds and by how much, when it does not fit
  // Whether every machine's predicted host memory fits its capacity (see above; separate from fits_memory,
  // which is about the devices' own memory and options.memory_limit).
  bool fits_host_memory = true;
  std::string host_memory_note;  // which machine exceeds, by how much and what fills it
};

// Simulates one step. The plan's mode, batch, microbatches and optimizer override those in `options`;
// options supply graph_batch, host_bandwidth and memory limits. Throws partita::Error when the plan does not
// match the graph or names devices the cluster lacks.
Simulation simulate(const Plan& plan, const Graph& graph, const Cluster& cluster, const CostTable& table,
                    const SearchOptions& options = {});

// The plan with its prediction recomputed by simulate (no search involved).
Plan evaluate(const Plan& plan, const Graph& graph, const Cluster& cluster, const CostTable& table,
              const SearchOptions& options = {});

// Chrome trace event JSON: {"traceEvents": [...]} with ph "X", pid 0 for devices and 1 for links/collectives,
// tid = resource index, ts/dur in microseconds, plus thread_name metadata events.
Json chrome_trace(const Simulation& sim);

}  // namespace partita

#pragma once
// Internal to the search library: the host memory of a simulated plan (the model is in simulator.h).
#include <map>
#include <string>
#include <vector>

#include "partita/core/units.h"
#include "partita/graph/graph.h"
#include "partita/search/plan.h"
#include "partita/search/simulator.h"
#include "partita/search/stage_model.h"
#include "partita/search/tensor_model.h"

namespace partita::detail {

// What the simulation found out about device prediction k that the host's figure needs.
struct DeviceHostFacts {
  Bytes offloaded{0};  // the peak bytes of saved activations kept on the host (activation offload)
  // Gradients its peak leaves out because backward had not made them yet (the peak is in its first backward
  // of the step: StageModel::backward_peak); 0 for tensor-parallel devices.
  Bytes unmade_gradients{0};
  // A tensor-parallel device's: the replicated part of what its peak leaves out (TensorModel::backward_peak).
  Bytes unmade_replicated{0};
  // Training: what the device keeps of one microbatch from its forward's end to its backward's start (its
  // activations; a checkpointed stage's input), and, on a later stage not tensor-parallel, the part of its
  // figure that is the stage's input (tensors an earlier stage produced and keeps too).
  Bytes kept{0};
  Bytes input{0};
  // Training, a CPU device not tensor-parallel in a process of several devices' (not a launched plan; not
  // a one-microbatch pipeline, whose stages peak in turn): its working memory (its figure less its model
  // state) over the step as changes in time, whose running sum peaks at that figure (simulate_chain). Empty
  // otherwise.
  struct Change {
    Seconds at;
    double bytes;
  };
  std::vector<Change> working;
};

// Fills sim.prediction.hosts from the plan and sim.prediction.devices (whose model_state must be set for
// CPU devices), and sets sim.fits_host_memory / host_memory_note. facts[k] belongs to
// sim.prediction.devices[k], which follow the plan's stages and each stage's group's devices in order.
// `tensor`: the plan's TensorModel when it has tensor-parallel groups (nullptr otherwise).
// `cpu_working`, when given, is each machine's (by node name) working memory of its CPU devices at once,
// from a time-resolved walk of the plan (simulate_branch's training timeline), in place of the sum of the
// devices' own peaks.
void predict_hosts(const Plan& plan, const Graph& graph, const StageModel& model, const TensorModel* tensor,
                   const std::vector<DeviceHostFacts>& facts, Simulation& sim,
                   const std::map<std::string, Bytes>* cpu_working = nullptr);

}  // namespace partita::detail

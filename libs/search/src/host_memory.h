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

// Fills sim.prediction.hosts from the plan and sim.prediction.devices (whose model_state must be set for
// CPU devices), and sets sim.fits_host_memory / host_memory_note. offloaded[k]: the peak bytes of saved
// activations device prediction k keeps on the host (activation offload; 0 otherwise). `tensor`: the
// plan's TensorModel when it has tensor-parallel groups (nullptr otherwise).
// `cpu_working`, when given, is each machine's (by node name) working memory of its CPU devices at once,
// from a time-resolved walk of the plan (simulate_branch's training timeline), in place of the sum of the
// devices' own peaks.
void predict_hosts(const Plan& plan, const Graph& graph, const StageModel& model, const TensorModel* tensor,
                   const std::vector<Bytes>& offloaded, Simulation& sim,
                   const std::map<std::string, Bytes>* cpu_working = nullptr);

}  // namespace partita::detail

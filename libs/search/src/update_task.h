#pragma once
// Internal to the search library: the optimizer step at the end of a simulated training step.
//
// Assumption (what partita's engine does): after the last backward and gradient all-reduce, one optimizer
// steps every trainable parameter where the engine keeps it. A parameter that only one single-device stage
// reads, on a device other than the CPU, whose stage does not offload optimizer state, is kept and updated on
// that device; every other one on the host: the CPU device of the plan with the most cores (the first of
// equals); for a plan without one, the cluster's CPU device with the most cores on the node of the plan's
// first device; else (a cluster that describes no CPU there) the plan's first device. One update task per
// place, running in parallel (the engine's host loop only launches a GPU's updates). Each place's time is its
// byte share of the measured whole-model step in SearchOptions::update_times for that device's spec, else
// optimizer_step_time over its tensors.
#include "partita/graph/graph.h"
#include "partita/hardware/device.h"
#include "partita/search/plan.h"
#include "partita/search/search_options.h"
#include "task_graph.h"

namespace partita::detail {

// Adds the update task after every task already in `tg` (training plans only; inference: does nothing).
void add_update_task(TaskGraph& tg, const Plan& plan, const Graph& graph, const Cluster& cluster,
                     const SearchOptions& options);

}  // namespace partita::detail

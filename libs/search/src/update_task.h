#pragma once
// Internal to the search library: the optimizer step at the end of a simulated training step.
//
// Assumption (what partita's engine does): after the last backward and gradient all-reduce, one optimizer
// step updates every trainable parameter on one device: the CPU device of the plan with the most cores (the
// first of equals), else the plan's first device. Its time is the measured one in
// SearchOptions::update_times for that device's spec, else optimizer_step_time over the graph's trainable
// tensors. (Engines that update each stage where it lives would overlap these; partita's does not.)
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

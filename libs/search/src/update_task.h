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
// share of the measured whole-model step in SearchOptions::update_times for that device's spec (of the
// bytes; on a CPU of the bytes plus cost/update.h's kCpuUpdateTensorBytes per tensor), else
// optimizer_step_time over its tensors.
// Except: a plan run in one process whose devices are two or more CPUs of one machine splits the step among
// them (update_split; the engine's OptimizerParts), one update task per device.
#include <optional>
#include <vector>

#include "partita/graph/graph.h"
#include "partita/hardware/device.h"
#include "partita/search/plan.h"
#include "partita/search/search_options.h"
#include "task_graph.h"

namespace partita::detail {

// How the engine splits the update of an in-process plan among its CPU devices (cost/update.h
// split_update): speeds are cores over the plan's device slowdown, in Plan::used_devices() order.
struct UpdateSplit {
  std::vector<int> devices;  // cluster indices of the plan's distinct devices
  std::vector<int> part;     // [trainable parameter, graph order] its index in `devices`
};
// Null when the engine steps the optimizer in one place: training plans of launched processes, of fewer
// than two devices, of any device other than a CPU or of CPUs on several machines.
std::optional<UpdateSplit> update_split(const Plan& plan, const Graph& graph, const Cluster& cluster);

// Adds the update task after every task already in `tg` (training plans only; inference: does nothing).
void add_update_task(TaskGraph& tg, const Plan& plan, const Graph& graph, const Cluster& cluster,
                     const SearchOptions& options);

}  // namespace partita::detail

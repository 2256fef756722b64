#pragma once
// What the planner needs, built from what the user named: the graph (a TorchScript model run once on its input
// specs, or a model spec YAML built without weights), the cluster (local device ids checked against this
// machine, or a cluster file), the cost table over the cluster's specs, and default search options.
// Shared by `partita plan`, `partita simulate` (which rebuilds the same inputs from a plan's "source" section)
// and `partita optimize`.
//
// Local devices: this machine's CPU is discovered (cpu_info.h) and matched against the hardware database;
// its GPUs come from NVML (named devices matched to database profiles). The default device list is every
// core as a one-core group ("cpu:0,...,cpu:N-1") plus every GPU with a profile.
// Cost table: roofline over the cluster's specs. No measured machine profile is used yet (the profile cache of
// `partita profile` is not available to this code); PlanSource::cost records "roofline" so a later run can tell.
#include <string>
#include <vector>

#include "partita/cost/compute.h"
#include "partita/graph/graph.h"
#include "partita/hardware/device.h"
#include "partita/hardware/hardware_db.h"
#include "partita/search/plan.h"
#include "partita/search/search_options.h"

namespace partita::app {

struct PlanningInputs {
  Graph graph;
  Cluster cluster;
  CostTable table;
  // Defaults: global_batch and graph_batch = the graph's batch; the caller sets mode, objective, strategy...
  SearchOptions options;
  // Absolute paths of what was used, for the plan's "source" section.
  PlanSource source;
};

// The graph `source` names: load + annotate the TorchScript model at its input specs, or build the model spec
// at source.batch samples. Throws partita::Error when neither or both are given, or a file is bad.
Graph load_source_graph(const PlanSource& source);

// Cluster, cost table and options for an already built graph (e.g. a model `optimize` has loaded and
// annotated). `source` names the devices (source.devices, "" = this machine's default list) or a cluster file
// (source.cluster); both set is an error. `graph_batch`: samples the graph's shapes are for (0: dim 0 of its
// first input).
PlanningInputs make_planning_inputs(Graph graph, PlanSource source, int graph_batch = 0);

// load_source_graph + make_planning_inputs.
PlanningInputs load_planning_inputs(const PlanSource& source);

// This machine as a cluster restricted to `devices` ("cpu", "cpu:0,cpu:1", "cpu:0-1,cuda:0"; "" = the default
// list). Throws partita::Error for a malformed id, an id this machine lacks ("device cuda:0 is not here: this
// machine has cpu, cpu:0, cpu:1; describe other hardware with --cluster FILE.yaml"), a repeated id, or CPU
// groups that share cores.
Cluster local_cluster(const std::string& devices, const HardwareDb& db);

// Parses "4GiB", "4 GiB", "512MB" or a plain byte count; throws partita::Error naming the text otherwise.
Bytes parse_memory_limit(const std::string& text);

}  // namespace partita::app

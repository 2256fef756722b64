#pragma once
// The processes `partita launch -n N -- partita run` runs a plan in, and the cluster as they see it.
//
// Layout (cmd_run's check_distributed_plan): a plan of one stage runs one process per device of its group
// (data-parallel replicas, a tensor group's devices); a plan of several stages (a pipeline, a hybrid, a
// pipeline of tensor groups, a branch plan) runs one process per stage, the stage's devices inside it.
// Model: data between two devices of one machine in different processes crosses a process link (alpha-beta,
// SearchOptions::process_links: the measured shared-memory mailbox and exchange, or Gloo's loopback TCP)
// instead of the in-process link: point-to-point messages the message link (a receiver asleep), collectives
// the collective link (members arriving together); simulate() builds a cluster for each. Between two CPU
// devices the process link replaces the in-process copy (its measurement includes the copies in and out); a
// GPU's data goes to the host first, so a pair with a GPU crosses the in-process link and the process link
// one after the other (latencies add, inverse bandwidths add). Devices on different machines keep the
// cluster's inter-node link. Collectives over a process link use cost/comm.h's formulas like any other link.
// Host memory is predicted per process (simulator.h). Not modelled: the processes' own threads competing for
// the cores. Pure functions, thread-safe.
#include <string>
#include <vector>

#include "partita/hardware/device.h"
#include "partita/search/plan.h"

namespace partita {

// [device in Plan::used_devices() order] the index of the process that runs it (the launch rank).
std::vector<int> launch_process_of_devices(const Plan& plan);

// `cluster` with explicit links, through `between`, joining every two devices of `plan` that share a
// machine but not a process. Throws partita::Error when the plan names a device the cluster lacks.
Cluster cluster_across_processes(const Cluster& cluster, const Plan& plan, const LinkSpec& between);

// `cluster` as processes of one device each see it: every two devices of one machine joined through
// `between` (as above). What a strategy's closed-form estimate costs a launched plan's stages or replicas
// with, before its layout is known (search/planner.h).
Cluster cluster_of_separate_processes(const Cluster& cluster, const LinkSpec& between);

// Two links one after the other: latencies add, and so do the times per byte.
LinkSpec links_in_series(const LinkSpec& first, const LinkSpec& second);

}  // namespace partita

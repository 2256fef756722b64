#pragma once
// Branch (inter-operator) parallelism: independent parts of the graph (Inception branches, parallel towers, a
// two-headed model) run at the same time on different devices. HEFT list scheduling (Topcuoglu, Hariri & Wu,
// "Performance-effective and low-complexity task scheduling for heterogeneous computing", TPDS 2002):
//   1. a node's weight is its mean time over the candidate devices (forward, + backward when training) for
//   one
//      microbatch; an edge's weight is the mean transfer time of the bytes it carries;
//   2. upward rank = weight + the heaviest (edge + rank) over successors; nodes are taken by decreasing rank
//      (ties: lower node id, so the order stays topological);
//   3. each node goes to the device where it finishes first, given when that device is free (appending, no
//      insertion into gaps) and when its inputs arrive (transfer time when they come from another device).
// The result is a kBranch plan: one single-device stage per used device with its ordered node list (plan.h).
// HEFT's schedule is only the assignment: the simulator (simulate_branch) scores it, with backward passes and
// microbatches. HEFT is greedy (it may split branches whose join then waits on a slow link), so each
// candidate keeps the whole graph on the fastest device instead when HEFT's own estimate says that finishes
// earlier. Candidate devices: the kBranchMaxDevices fastest (cluster order among equals). Memory is not
// considered while scheduling; candidates that do not fit are dropped by the planner.
#include <vector>

#include "partita/search/plan.h"
#include "partita/search/stage_model.h"

namespace partita {

inline constexpr int kBranchMaxDevices = 8;

// Node -> device index (into `devices`) and each device's node order, from HEFT over `devices` (cluster
// device indices) at `samples` samples per microbatch.
struct BranchSchedule {
  std::vector<int> device_of;              // per node, index into `devices`
  std::vector<std::vector<NodeId>> order;  // per device, its nodes in execution order
  Seconds makespan{0};                     // HEFT's own estimate for one microbatch (forward [+ backward])
};
BranchSchedule heft_schedule(const StageModel& model, const std::vector<int>& devices, int samples);

// Branch plans (one per microbatch count in {1, 2, 4, 8} that divides the batch), best HEFT estimate first;
// none for a model with a node that must see an in-place write made through another value
// (graph/analysis.h's first_read_seeing_a_write: the branch runner refuses those).
std::vector<Plan> branch_candidates(const StageModel& model);

}  // namespace partita

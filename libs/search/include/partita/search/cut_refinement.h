#pragma once
// Cut refinement: a local search over a pipeline plan's cut points, scored by the simulator.
//
// The chain partitioner (chain_partition.h) picks cuts among coarse blocks by the slowest stage of
// closed-form stage costs. The simulator sees more than that model: the schedule's fill and drain, which
// device runs the optimizer update, transfers waiting for a busy link, and cuts between any two nodes rather
// than blocks. A cut a few nodes to one side is often faster in simulation (GPT 8x128 training, cpu:0 + cpu:1
// with cpu:0 2x slower, 4 microbatches: the partitioner's cut after node 134 simulates 170.6 ms, one after
// node 137 167.0).
//
// refine_cuts moves one cut at a time to an allowed position 1, 2, 4, ... allowed positions away on either
// side (so a run of nodes that cost nothing, such as views, does not stop it), takes the best move that
// improves the objective's score, and repeats until no move improves or the simulation budget is spent.
// Stages keep their devices, checkpointing and offload; a move that breaks a memory cap (or, under
// MemoryCap::kDeviceAndLimit, a machine's host memory) is not taken. Deterministic.
// Score: the step time (kTime, kBalanced), the energy per step (kEnergy); the other breaks ties.
#include <vector>

#include "partita/cost/compute.h"
#include "partita/graph/graph.h"
#include "partita/hardware/device.h"
#include "partita/search/plan.h"
#include "partita/search/search_options.h"

namespace partita {

inline constexpr int kCutRefinementSimulations = 48;
// Plans with more cuts than this are left as the partitioner made them (a sweep would cost too many
// simulations; the block-level cuts of big models are fine-grained enough relative to their stages).
inline constexpr int kCutRefinementMaxCuts = 8;

struct CutRefinement {
  Plan plan;            // the refined plan, its prediction from its own simulation
  int simulations = 0;  // simulations run (the input plan's not counted)
  int moves = 0;        // improving moves taken
};

// Whether refine_cuts would touch the plan: two to kCutRefinementMaxCuts + 1 range stages, no tensor groups.
bool refinable(const Plan& plan);

// `plan` must carry its own simulated prediction (as the planner's evaluated candidates do) and fit.
// `allowed[n]`: a cut may follow node n (graph/analysis.h's process_cuts for pipelines, hybrid_cuts for
// hybrid plans). Plans that are not refinable come back unchanged.
CutRefinement refine_cuts(Plan plan, const Graph& graph, const Cluster& cluster, const CostTable& table,
                          const SearchOptions& options, const std::vector<bool>& allowed,
                          int max_simulations = kCutRefinementSimulations);

}  // namespace partita

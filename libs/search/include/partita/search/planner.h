#pragma once
// The planner: runs the strategy generators the options ask for, evaluates every candidate with the
// simulator, drops any that break a device's memory (they are never returned or ranked), and picks by
// objective. When nothing fits it finds, by bisection over memory_limit (MemoryCap::kLimitOnly), the smallest
// per-device memory for which a plan exists and says so.
#include <optional>
#include <string>
#include <vector>

#include "partita/cost/compute.h"
#include "partita/graph/graph.h"
#include "partita/hardware/device.h"
#include "partita/search/plan.h"
#include "partita/search/search_options.h"

namespace partita {

struct PlanOutcome {
  std::optional<Plan> plan;  // the chosen plan with its simulated prediction
  // Every feasible evaluated candidate, best first by objective; one per layout (when two strategies
  // propose the same groups, stages, microbatches, schedule and savings, the better-ranked label stays).
  std::vector<Plan> candidates;
  std::vector<size_t> pareto;       // indices into candidates on the time/energy Pareto front
  std::string error;                // why there is no plan (empty when there is one)
  std::optional<Bytes> min_memory;  // when nothing fits: the smallest per-device memory that would
};

// Unevaluated candidates of one strategy (kAuto: data, pipeline, hybrid, branch and tensor; kEven only when
// asked for).
std::vector<Plan> generate_candidates(const Graph& graph, const Cluster& cluster, const CostTable& table,
                                      const SearchOptions& options);

// Throws partita::Error only for bad inputs (options, a cost table that does not match); infeasibility is
// reported in the outcome.
PlanOutcome make_plan(const Graph& graph, const Cluster& cluster, const CostTable& table,
                      const SearchOptions& options);

}  // namespace partita

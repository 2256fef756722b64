#pragma once
// Helpers shared by the strategies: microbatch counts to try, turning a chain solution into a Plan, and
// recording why devices are left out.
#include <string>
#include <vector>

#include "partita/search/chain_partition.h"
#include "partita/search/plan.h"
#include "partita/search/stage_model.h"

namespace partita {

// Divisors m of options.global_batch with m <= options.max_microbatches and global_batch / m >= min_size,
// ascending. Inference and training alike. When options.microbatches is set, just that count (if the size
// fits).
std::vector<int> microbatch_candidates(const SearchOptions& options, int min_microbatch_size);

// A plan skeleton (identity, mode, batch, optimizer) without groups or stages.
Plan empty_plan(const StageModel& model, StrategyKind strategy);

// The plan for `solution` of `problem`: one data-parallel group per slot with even shares.
Plan chain_to_plan(const ChainProblem& problem, const ChainSolution& solution, StrategyKind strategy);

// Adds every cluster device missing from the plan's groups to unused_devices with `reason`.
void mark_unused_devices(Plan& plan, const Cluster& cluster, const std::string& reason);

// Consecutive slots for single devices in `order` (pipeline stages of one device each).
std::vector<ChainSlot> single_device_slots(const StageModel& model, const std::vector<int>& order);

}  // namespace partita

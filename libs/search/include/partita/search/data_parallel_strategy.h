#pragma once
// Data parallel strategy: every device holds the whole graph and takes an integer share of each microbatch,
// shares proportional to speed (greedy least-finish-time assignment of samples, optimal for unit jobs on
// uniformly related machines), capped by what fits in each device's memory. Gradients are all-reduced once
// per step over the slowest link of the ring (cost/comm.h). Microbatches > 1 means gradient accumulation:
// used only when the batch does not fit otherwise. Device sets tried: the fastest d devices, d at every
// change of device kind (every d when there are at most 8 devices); a device left out is listed with the
// reason. Memory savings: the fastest of StageModel::savings_choices(devices) that fits, for the whole group
// (one microbatch is in flight, so only optimizer-state offload can save memory here; activation offload
// and checkpointing keep as much as they drop).
#include <optional>
#include <vector>

#include "partita/search/plan.h"
#include "partita/search/stage_model.h"

namespace partita {

// Integer shares of `samples` over devices with per-sample times `per_sample` (seconds) and caps, minimising
// the largest share * time. nullopt when the caps sum to less than `samples`.
std::optional<std::vector<int>> proportional_shares(int samples, const std::vector<double>& per_sample,
                                                    const std::vector<int>& caps);

// Data parallel plans, best estimate first (not yet evaluated).
std::vector<Plan> data_parallel_candidates(const StageModel& model);

// The naive data-parallel baseline: all devices, equal shares (remainder to the first ones), one microbatch
// unless memory needs more; nullopt when it cannot fit.
std::optional<Plan> even_data_parallel_plan(const StageModel& model);

}  // namespace partita

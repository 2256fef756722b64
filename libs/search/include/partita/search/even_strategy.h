#pragma once
// The naive baselines people write by hand: a pipeline over all devices in cluster order with an equal number
// of FLOP-bearing nodes per stage (about equal "layers"), and data parallel with equal batch shares. Memory
// savings (checkpointing, offload) are still chosen per stage so the baseline runs where it can.
#include <optional>
#include <vector>

#include "partita/search/plan.h"
#include "partita/search/stage_model.h"

namespace partita {

// Microbatches: the largest candidate not above 4 x stages. nullopt when a stage does not fit in memory.
std::optional<Plan> even_pipeline_plan(const StageModel& model);

// Both baselines that fit (pipeline first).
std::vector<Plan> even_candidates(const StageModel& model);

}  // namespace partita

#pragma once
// Pipeline strategy: one device per stage, contiguous stages on a chain of unequal devices.
// Device order: with at most kExhaustivePipelineDevices devices every ordered subset is tried (so the result
// is the exact optimum of the chain model); beyond that, cluster order, fastest-first and slowest-first, each
// with the first P devices for P in {1, 2, 4, ..., all}. Microbatch counts: every candidate of
// microbatch_candidates. Training uses 1F1B (same step time as GPipe, fewer activations in flight).
#include <optional>
#include <vector>

#include "partita/search/chain_partition.h"
#include "partita/search/plan.h"
#include "partita/search/stage_model.h"

namespace partita {

inline constexpr int kExhaustivePipelineDevices = 4;

struct PipelineChoice {
  ChainProblem problem;
  ChainSolution solution;
};

// Least-bottleneck pipeline for a fixed microbatch count (ties: lower estimated step time); nullopt when no
// device order fits in memory.
std::optional<PipelineChoice> best_pipeline(const StageModel& model, const std::vector<NodeId>& blocks,
                                            int microbatches, Schedule schedule);

// The best pipeline per microbatch count, as plans (not yet evaluated), best estimate first.
std::vector<Plan> pipeline_candidates(const StageModel& model, const std::vector<NodeId>& blocks);

}  // namespace partita

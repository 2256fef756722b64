#pragma once
// Tensor-parallel strategy: the whole graph on one group of p devices of one kind on one machine (tensor
// parallelism needs a fast link: an all-reduce per matmul pair sits on the critical path), split
// Megatron-style as tensor_model.h describes. Group sizes p in {2, 4, 8, ...} up to the devices of that kind
// on a node; the fewest microbatches whose activations fit. Nothing is proposed when the graph has no weight
// matmul to split.
#include <vector>

#include "partita/search/plan.h"
#include "partita/search/stage_model.h"

namespace partita {

// Tensor-parallel plans (not yet evaluated), best estimate first.
std::vector<Plan> tensor_candidates(const StageModel& model);

}  // namespace partita

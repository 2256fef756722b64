#pragma once
// Hybrid strategy (after Metis, Um et al., ATC'24): pipeline stages that are data-parallel groups of devices
// of one kind (one cost-table spec). Each kind's devices (in cluster order, so groups stay on a node) are cut
// into consecutive groups; the groups of all kinds form a chain, kinds in every order; the chain DP
// (chain_partition.h) assigns blocks and picks checkpointing/offload per stage.
// Group layouts: when every kind has at most kExhaustiveHybridDevices devices and there are at most 3 kinds,
// every composition of every kind (and every subset of kinds) is tried, so the result is the exact optimum of
// the model. Otherwise a total stage count S in {1, 2, 3, 4, 6, 8, 12, ...} is spread over kinds in
// proportion to their compute (largest remainder), groups as equal as possible. Microbatch counts: divisors
// of the batch up to max(options.max_microbatches, 4 x the deepest layout's stages), so deep pipelines can
// shrink their bubble ((S - 1) / (m + S - 1) of the step).
// Tensor x data slots: every family of layouts above is tried again with tensor-parallel groups of 2, 4 and
// 8 devices (kTensorSizes) wherever a kind's devices form whole groups of that size on one node and the model
// has matmuls to split (tensor_model.h): a slot is then replicas of such groups (Megatron-style "TP inside a
// machine, pipeline and data parallelism across"); such groups need fewer replicas per stage, so a deep
// pipeline keeps more microbatches per step. The microbatch counts are searched on several threads
// (src/parallel_for.h; the same plans on any thread count).
#include <optional>
#include <vector>

#include "partita/search/chain_partition.h"
#include "partita/search/pipeline_strategy.h"
#include "partita/search/stage_model.h"

namespace partita {

inline constexpr int kExhaustiveHybridDevices = 4;
inline constexpr int kTensorSizes[] = {1, 2, 4, 8};  // devices per tensor-parallel group in a hybrid slot

// Every chain layout considered (see above), each at most `max_stages` slots long.
std::vector<std::vector<ChainSlot>> hybrid_layouts(const StageModel& model, int max_stages);

// Least-bottleneck hybrid for a fixed microbatch count over `layouts` (ties: lower estimate).
std::optional<PipelineChoice> best_hybrid(const StageModel& model, const TensorModel& tensor,
                                          const std::vector<NodeId>& blocks,
                                          const std::vector<std::vector<ChainSlot>>& layouts,
                                          int microbatches, Schedule schedule);

// The best hybrid per microbatch count, as plans (not yet evaluated), best estimate first.
std::vector<Plan> hybrid_candidates(const StageModel& model, const std::vector<NodeId>& blocks);

}  // namespace partita

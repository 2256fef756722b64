#pragma once
// Optimal contiguous partition of the node order onto a chain of device groups ("slots") joined by links.
//
// Model: a step runs `microbatches` microbatches through the chain. A slot's per-step busy time is
//   microbatches * (microbatch time of its largest share, activation copies to the host and back included)
//   + gradient all-reduce in the group + optimizer-state offload
// and a link's per-step time is microbatches * p2p(boundary bytes of one microbatch share). The objective is
// the bottleneck: the largest busy time of any slot or link (links are full duplex and overlap compute). Each
// stage picks the cheapest of StageModel::savings_choices (training: {no checkpointing, checkpointing} x
// {no offload, optimizer state, activations, both}, no activation offload with checkpointing, no offload on
// CPUs) that fits the memory of every device in its slot; a stage that fits in none is infeasible. DP over
// block cut points: O(slots * blocks^2) stage evaluations, each O(1) from StageModel's prefix sums.
//
// A slot with tensor_size t > 1 is replicas of t-way tensor-parallel groups (TensorModel's costs and memory:
// each group runs its replica's share of the microbatch with the split matmuls' all-reduces on the critical
// path; the replicas all-reduce each device's weight shard). Such a stage chooses only between no
// checkpointing and full checkpointing (no offload). Links between slots carry one lane per replica of the
// narrower side.
#include <optional>
#include <vector>

#include "partita/hardware/device.h"
#include "partita/search/stage_model.h"
#include "partita/search/tensor_model.h"

namespace partita {

// One position of the chain: a group of devices of one spec splitting each microbatch evenly between its
// replicas (devices / tensor_size of them).
struct ChainSlot {
  std::vector<int> devices;  // cluster device indices
  LinkSpec group_link;       // slowest link inside the group (all-reduce); ignored for one device
  LinkSpec next_link;        // link to the next slot; ignored for the last
  int tensor_size = 1;   // devices per tensor-parallel group (consecutive in `devices`); divides their count
  LinkSpec tensor_link;  // slowest link inside one tensor-parallel group; ignored when tensor_size is 1

  int replicas() const { return static_cast<int>(devices.size()) / tensor_size; }
};

struct ChainProblem {
  const StageModel* model = nullptr;
  std::vector<NodeId> block_ends;  // from block_ends()
  std::vector<ChainSlot> slots;
  int microbatches = 1;
  int microbatch_size = 1;
  Schedule schedule = Schedule::kOneFOneB;
  const TensorModel* tensor = nullptr;  // over *model; needed when a slot's tensor_size is above 1
};

struct StageChoice {
  NodeId first = 0;
  NodeId last = 0;
  Checkpointing checkpointing = Checkpointing::kNone;
  Offload offload = Offload::kNone;
  Seconds busy{0};            // per step
  Seconds per_microbatch{0};  // compute of one microbatch (largest share)
};

struct ChainSolution {
  Seconds bottleneck{0};
  Seconds estimate{0};              // closed-form step time: bottleneck + pipeline fill and drain
  std::vector<StageChoice> stages;  // one per slot

  // Ranking between layouts: smaller bottleneck first, then smaller closed-form estimate.
  bool better_than(const ChainSolution& other) const {
    return bottleneck < other.bottleneck || (bottleneck == other.bottleneck && estimate < other.estimate);
  }
};

// Samples of each device of a slot with `devices` devices for a microbatch of `microbatch_size` (even split,
// the first ones take the remainder).
std::vector<int> even_shares(int microbatch_size, int devices);

// Cheapest fitting option for slot `slot` holding nodes [first, last]; nullopt when nothing fits.
std::optional<StageChoice> evaluate_stage(const ChainProblem& problem, int slot, NodeId first, NodeId last);
// Per-step time of the link after slot `slot` when the cut is after node `after`.
Seconds evaluate_link(const ChainProblem& problem, int slot, NodeId after);
// Closed-form step time of a complete assignment (used to rank solutions and candidates).
Seconds estimate_step(const ChainProblem& problem, const std::vector<StageChoice>& stages);

// The optimal partition (every slot non-empty); nullopt when the chain is longer than the blocks or no
// partition fits in memory.
std::optional<ChainSolution> partition_chain(const ChainProblem& problem);

// The same optimum by enumerating every composition of the blocks (exponential: tests and benchmarks only).
std::optional<ChainSolution> partition_chain_brute_force(const ChainProblem& problem);

}  // namespace partita

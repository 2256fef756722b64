#pragma once
// Checks for real whether a model's graph is batch-splittable: a trace can bake the batch size into a
// reshape, so the graph is run again at a second batch size and every node whose output does not follow the
// batch is named. A batch that leaves dim 0 inside the model (an LSTM's final state, batch in dim 1, whose
// last layer a classifier reads) is not proof of mixing, nor is a node whose shape no longer depends on the
// batch a proof that it does (x - x.mean(0) mixes samples; a model returning its own loss cannot be joined):
// for either the model also runs on two halves of a batch, and when every output follows the batch in dim 0
// and the halves' outputs, joined, equal the whole batch's, the split is safe (what a data-parallel replica
// or a microbatch computes is what the whole batch would).
#include <string>
#include <vector>

#include "partita/torch_bridge/model.h"

namespace partita {

enum class BatchBehavior {
  kFollowsBatch,  // outputs scale along dim 0 with the batch (data-parallel safe)
  kBatchFree,     // nothing batch-dependent flows through (weights, constants, shape math)
  kReducesBatch,  // batch-dependent inputs, batch-independent output (mixes samples: a loss, a batch mean)
  kMovesBatch,    // the batch leaves dim 0 or mixes with other dims in a way a split would break
  kFails,         // the node throws at the second batch size (batch baked into a constant shape)
};

// What running two halves of a batch on their own showed (only run when a node moves the batch out of dim 0
// or reduces over it).
enum class HalvesVerdict {
  kNotRun,  // no node moves or reduces the batch, or the second batch size already failed
  kAgree,   // every output follows the batch in dim 0 and the joined halves equal the whole batch's
  kOutputOutsideDim0,  // an output does not carry the batch in dim 0 (a sequence-first output, a baked
                       // reshape)
  kMixSamples,         // the outputs follow the batch but their values differ: the model mixes samples
  kFailed,             // running half a batch threw
};

struct NodeBatchCheck {
  NodeId node = kNoNode;
  BatchBehavior behavior = BatchBehavior::kFollowsBatch;
  std::string detail;  // for kMovesBatch/kFails: shapes or the torch error
};

struct BatchCheckResult {
  int64_t batch = 0;                     // the annotated batch size
  int64_t second_batch = 0;              // the one tried
  std::vector<NodeBatchCheck> problems;  // nodes that are kReducesBatch, kMovesBatch or kFails
  // With kMovesBatch or kReducesBatch problems: whether two halves of the batch, run on their own, gave the
  // whole batch's outputs (each output following the batch in dim 0); halves_detail says how they differed
  // otherwise.
  HalvesVerdict halves = HalvesVerdict::kNotRun;
  std::string halves_detail;
  bool halves_agree() const { return halves == HalvesVerdict::kAgree; }
  // No kFails problem, and no kMovesBatch or kReducesBatch one unless the halves agree.
  bool splittable() const;
};

std::string_view batch_behavior_name(BatchBehavior b);

// `model` must be annotated (annotate_shapes) at `specs`. Runs the graph at batch+1 (2 when batch is 1).
BatchCheckResult check_batch_splittability(const LoadedModel& model, const std::vector<InputSpec>& specs);

}  // namespace partita

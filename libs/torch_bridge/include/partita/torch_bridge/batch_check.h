#pragma once
// Checks for real whether a model's graph is batch-splittable: a trace can bake the batch size into a
// reshape, so the graph is run again at a second batch size and every node whose output does not follow the
// batch is named. Shapes do not settle it either way: a batch that leaves dim 0 inside the model (an LSTM's
// final state, batch in dim 1, whose last layer a classifier reads) is not proof of mixing, and a node whose
// output keeps the batch's shape can still work along it (x.flip(0), x.cumsum(0), x - x.mean(0), a batch
// concatenated with itself). So the model also runs on two halves of a batch, and the split is safe when
// every output carries the batch in dim 0 and the halves' outputs, joined, equal the whole batch's (what a
// data-parallel replica or a microbatch computes is what the whole batch would). The halves run dropout and
// batch norm as in eval mode and other floating-point random draws (randn_like noise, bernoulli units) at
// their expected value: a replica drawing its own dropout masks and noise, or normalizing by its own share's
// statistics as under DDP, is accepted. Inputs are random (make_inputs): a model whose mixing shows only on
// particular values could pass.
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

// What running two halves of a batch on their own showed.
enum class HalvesVerdict {
  kNotRun,  // the second batch size already failed
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
  // Whether two halves of the batch, run on their own, gave the whole batch's outputs (each output carrying
  // the batch in dim 0); halves_detail says how they differed otherwise. kMovesBatch and kReducesBatch
  // problems are harmless when they agree.
  HalvesVerdict halves = HalvesVerdict::kNotRun;
  std::string halves_detail;
  // Nodes drawing random numbers besides dropout (randn_like, bernoulli, randint, ...): checked at their
  // expected value where they draw floats; split, each share draws its own.
  std::vector<NodeId> random_draws;
  bool halves_agree() const { return halves == HalvesVerdict::kAgree; }
  // No kFails problem, and the halves agree.
  bool splittable() const;
};

std::string_view batch_behavior_name(BatchBehavior b);

// `model` must be annotated (annotate_shapes) at `specs`. Runs the graph at batch+1 (2 when batch is 1).
BatchCheckResult check_batch_splittability(const LoadedModel& model, const std::vector<InputSpec>& specs);

}  // namespace partita

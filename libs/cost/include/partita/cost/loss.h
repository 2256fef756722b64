#pragma once
// The training losses partita computes from a model's first output (runtime/loss.h runs them), and what their
// targets take in memory. Torch-free, so the planner can count them.
#include <string_view>

#include "partita/graph/graph.h"
#include "partita/graph/tensor_meta.h"

namespace partita {

enum class LossKind {
  kAuto,          // next-token for integer inputs with a [B, T, V] output; cross-entropy for [B, C]; else MSE
  kCrossEntropy,  // targets: class indices [B] for scores [B, C]; [B, d1, ...] for dense scores [B, C, d1,
                  // ...]
  kMse,           // targets: same shape as the output
  kNextToken,     // targets: the token ids [B, T]; logits [B, T, V] predict token t+1 from position t
};
std::string_view loss_kind_name(LossKind kind);
LossKind parse_loss_kind(std::string_view name);

// Chooses kAuto's loss from the model's batch input (Graph::batch_input_index: the first that is not shared)
// and first output.
LossKind resolve_loss(LossKind kind, const TensorMeta& batch_input, const TensorMeta& output);

// The bytes of the targets a training step holds for `output` (the first output, whole batch) under a
// resolved `kind`, as runtime/loss.cpp's make_targets draws them: MSE a float32 tensor of the output's shape,
// cross-entropy int64 class indices (one per sample, or per position for dense scores), next-token none (the
// input's token ids are the targets).
Bytes loss_target_bytes(LossKind kind, const TensorMeta& output);
// The same for a graph's first output, kAuto resolved from its batch input; none without a batched input.
Bytes loss_target_bytes(const Graph& graph, LossKind kind);

// What the loss of a training step over the whole batch holds beside the model's own memory: one tensor the
// size of the floating graph outputs (what the loss keeps for backward: cross-entropy's log-softmax; the
// output's gradient it hands back) and the first output's targets under `kind` (kAuto resolved from the
// graph's batch input, as the engine does). No targets for a graph without a batched input.
Bytes loss_step_bytes(const Graph& graph, LossKind kind);

// What the loss holds at its own backward's peak, beside the model's outputs: loss_step_bytes and one more
// tensor of the first output's size. Cross-entropy and next-token keep the log-softmax, and their backward
// makes its gradient and then the output's while it is alive (the output itself is freed after the loss's
// forward unless its producer saved it; next-token's shifted copy of the logits too); MSE keeps the output
// and its targets, and its backward makes a difference and the output's gradient. It comes as backward
// starts, before any parameter gradient, then drops to loss_step_bytes. Measured with PyTorch 1.13's profiler
// on a float32 [8, 128, 2048] output kept alive: 3.00 (cross-entropy), 2.98 (next-token) and 2.00 (MSE) times
// its size beside it; `partita estimate` of the zoo's GPT at 8x128, training: 114.19 MiB predicted and
// metered. (The planner's stage model counts this moment without the output, which the engine drops once the
// loss has it: loss_step_bytes and two tensors of the first output's size, StageModel::loss_backward_moment.)
// kAuto resolves as loss_step_bytes does.
Bytes loss_backward_bytes(const Graph& graph, LossKind kind);

}  // namespace partita

#include "partita/cost/loss.h"

#include "partita/core/error.h"

namespace partita {

std::string_view loss_kind_name(LossKind kind) {
  switch (kind) {
    case LossKind::kAuto:
      return "auto";
    case LossKind::kCrossEntropy:
      return "cross_entropy";
    case LossKind::kMse:
      return "mse";
    case LossKind::kNextToken:
      return "next_token";
  }
  return "?";
}

LossKind parse_loss_kind(std::string_view name) {
  for (LossKind k : {LossKind::kAuto, LossKind::kCrossEntropy, LossKind::kMse, LossKind::kNextToken}) {
    if (loss_kind_name(k) == name) return k;
  }
  PARTITA_FAIL("unknown loss '", name, "': use auto, cross_entropy, mse or next_token");
}

LossKind resolve_loss(LossKind kind, const TensorMeta& batch_input, const TensorMeta& output) {
  if (kind != LossKind::kAuto) return kind;
  const bool int_input = !is_floating(batch_input.dtype);
  if (int_input && output.shape.size() == 3 && batch_input.shape.size() == 2) return LossKind::kNextToken;
  if (output.shape.size() == 2 && output.shape[1] > 1) return LossKind::kCrossEntropy;
  return LossKind::kMse;
}

Bytes loss_target_bytes(LossKind kind, const TensorMeta& output) {
  int64_t elements = 1;
  for (int64_t d : output.shape) elements *= d;
  switch (kind) {
    case LossKind::kMse:
      return Bytes(elements * 4);
    case LossKind::kCrossEntropy: {
      const int64_t classes = output.shape.size() >= 2 && output.shape[1] > 0 ? output.shape[1] : 1;
      return Bytes(elements / classes * 8);
    }
    case LossKind::kNextToken:
      return Bytes(0);
    case LossKind::kAuto:
      break;
  }
  PARTITA_ASSERT(false, "loss_target_bytes: resolve the loss kind first");
  return Bytes(0);
}

Bytes loss_step_bytes(const Graph& graph, LossKind kind) {
  Bytes held(0);
  for (ValueId id : graph.outputs()) {
    const Value& out = graph.value(id);
    if (out.meta() && is_floating(out.meta()->dtype)) held += out.bytes();
  }
  const int carrier = graph.batch_input_index();
  if (carrier < 0 || graph.outputs().empty()) return held;
  const Value& first = graph.value(graph.outputs().front());
  const TensorMeta* input = graph.value(graph.inputs()[static_cast<size_t>(carrier)]).meta();
  if (first.tensors.empty() || input == nullptr) return held;
  const TensorMeta& output = first.tensors.front();
  return held + loss_target_bytes(resolve_loss(kind, *input, output), output);
}

}  // namespace partita

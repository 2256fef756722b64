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

namespace {

// The first output's tensor and the loss `kind` resolves to for it; no tensor without a batched input.
struct LossTarget {
  const TensorMeta* output = nullptr;
  LossKind kind = LossKind::kAuto;
};
LossTarget loss_target(const Graph& graph, LossKind kind) {
  const int carrier = graph.batch_input_index();
  if (carrier < 0 || graph.outputs().empty()) return {};
  const Value& first = graph.value(graph.outputs().front());
  const TensorMeta* input = graph.value(graph.inputs()[static_cast<size_t>(carrier)]).meta();
  if (first.tensors.empty() || input == nullptr) return {};
  return LossTarget{&first.tensors.front(), resolve_loss(kind, *input, first.tensors.front())};
}

Bytes floating_output_bytes(const Graph& graph) {
  Bytes held(0);
  for (ValueId id : graph.outputs()) {
    const Value& out = graph.value(id);
    if (out.meta() && is_floating(out.meta()->dtype)) held += out.bytes();
  }
  return held;
}

}  // namespace

Bytes loss_target_bytes(const Graph& graph, LossKind kind) {
  const LossTarget t = loss_target(graph, kind);
  return t.output == nullptr ? Bytes(0) : loss_target_bytes(t.kind, *t.output);
}

Bytes loss_step_bytes(const Graph& graph, LossKind kind) {
  return floating_output_bytes(graph) + loss_target_bytes(graph, kind);
}

Bytes loss_backward_bytes(const Graph& graph, LossKind kind) {
  const LossTarget t = loss_target(graph, kind);
  if (t.output == nullptr) return floating_output_bytes(graph);
  const Bytes first = is_floating(t.output->dtype) ? t.output->bytes() : Bytes(0);
  return loss_step_bytes(graph, kind) + first;
}

}  // namespace partita

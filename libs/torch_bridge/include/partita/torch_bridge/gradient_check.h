#pragma once
// Checks, before anything trains, that a gradient can flow back through every node of a model. Some kernels
// have no derivative: LibTorch gives their outputs an autograd node that only throws ("derivative for X is
// not implemented") once a backward reaches it. The usual source is torch.nn's fused inference fast path
// (aten::_transformer_encoder_layer_fwd, aten::_native_multi_head_attention), which a transformer layer takes
// when it is traced in eval mode under torch.no_grad(). Found by running one forward with gradients on: the
// node is named at once instead of after minutes of planning or in a failed step.
#include <optional>
#include <string>
#include <vector>

#include "partita/torch_bridge/model.h"

namespace partita {

struct NodeWithoutDerivative {
  NodeId node = kNoNode;
  std::string
      message;  // LibTorch's, e.g. "derivative for aten::_transformer_encoder_layer_fwd is not implemented"
};

// The first node, in execution order, that outputs a tensor whose autograd node only throws; nullopt when a
// gradient can reach every parameter that requires one. Runs the model once on inputs made from `specs`.
std::optional<NodeWithoutDerivative> first_node_without_derivative(const LoadedModel& model,
                                                                   const std::vector<InputSpec>& specs);

// Throws partita::Error naming that node and what to do about it; also when the model has nothing to train
// (no parameter requires a gradient) or its first output is not a tensor with a batch dimension (partita
// computes the loss from per-sample outputs); and when LibTorch's autograd refuses one backward (of the
// sum of the first output tensor, run here as training would): an in-place write into a tensor an earlier
// op saved for its gradient (k = linear(h); h[:, :8].mul_(0); head(k + h)), which PyTorch's own training
// refuses too. The parameters' gradients are dropped afterwards.
void check_trainable(const LoadedModel& model, const std::vector<InputSpec>& specs);

}  // namespace partita

#include "partita/torch_bridge/gradient_check.h"

#include <torch/csrc/autograd/functions/basic_ops.h>

#include <algorithm>

#include "partita/core/error.h"
#include "partita/torch_bridge/executor.h"

namespace partita {

namespace {

// The autograd node of a tensor when it is one that throws on backward (torch::autograd::Error, the base of
// NotImplemented), else null.
const torch::autograd::Error* throwing_grad_fn(const torch::Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  return dynamic_cast<const torch::autograd::Error*>(t.grad_fn().get());
}

class DerivativeFinder : public ExecutionObserver {
 public:
  void on_node_end(const Node& node, c10::ArrayRef<c10::IValue> outputs) override {
    if (found) return;
    for (const auto& iv : outputs) {
      std::vector<torch::Tensor> tensors;
      if (iv.isTensor()) {
        tensors.push_back(iv.toTensor());
      } else if (iv.isTensorList()) {
        tensors = iv.toTensorVector();
      }
      for (const auto& t : tensors) {
        if (const auto* error = throwing_grad_fn(t)) {
          found = NodeWithoutDerivative{node.id, error->msg};
          return;
        }
      }
    }
  }
  std::optional<NodeWithoutDerivative> found;
};

}  // namespace

std::optional<NodeWithoutDerivative> first_node_without_derivative(const LoadedModel& model,
                                                                   const std::vector<InputSpec>& specs) {
  torch::AutoGradMode grad(true);
  const Executor executor(model);
  std::vector<c10::IValue> inputs;
  for (auto& t : make_inputs(specs)) inputs.emplace_back(std::move(t));
  DerivativeFinder finder;
  executor.run(inputs, &finder);
  return finder.found;
}

void check_trainable(const LoadedModel& model, const std::vector<InputSpec>& specs) {
  const Graph& g = model.ir;
  const auto& params = g.parameters();
  PARTITA_CHECK(std::any_of(params.begin(), params.end(), [](const Parameter& p) { return p.requires_grad; }),
                "cannot train ", model.path,
                ": it has no parameter that requires a gradient, so a step would change nothing; leave out "
                "--train");
  const bool tensor_output = !g.outputs().empty() && !g.value(g.outputs()[0]).tensors.empty();
  PARTITA_CHECK(tensor_output, "cannot train ", model.path,
                ": its first output is not a tensor, and partita computes the loss from it; return the "
                "per-sample outputs (logits) first, or leave out --train");
  PARTITA_CHECK(
      !g.value(g.outputs()[0]).tensors[0].shape.empty(), "cannot train ", model.path,
      ": its first output is a 0-d tensor (its own loss, or a mean over the batch?), and partita "
      "computes the loss (cross-entropy or MSE against targets) from per-sample outputs; return the "
      "outputs with the batch in dim 0, or leave out --train");
  const DType out_dtype = g.value(g.outputs()[0]).tensors[0].dtype;
  PARTITA_CHECK(
      is_floating(out_dtype), "cannot train ", model.path, ": its first output is ", dtype_name(out_dtype),
      " (an argmax or a mask?), which no gradient flows through, and partita computes the loss from "
      "it; return the logits first, or leave out --train");
  const auto missing = first_node_without_derivative(model, specs);
  if (!missing) return;
  PARTITA_FAIL("cannot train ", model.path, ": ", describe_node(model.ir.node(missing->node)),
               " has no gradient in LibTorch (", missing->message,
               "); a fused inference kernel like this one is what torch.nn traces in eval mode under "
               "torch.no_grad(): trace the model in training mode (model.train()) to train it, or leave out "
               "--train");
}

}  // namespace partita

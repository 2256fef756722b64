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

// The first tensor in a model output (a tensor, or the first one inside a tuple or list), or undefined.
torch::Tensor first_tensor(const c10::IValue& iv) {
  if (iv.isTensor()) return iv.toTensor();
  if (iv.isTuple()) {
    for (const auto& e : iv.toTupleRef().elements()) {
      if (auto t = first_tensor(e); t.defined()) return t;
    }
  }
  if (iv.isList()) {
    for (const auto& e : iv.toListRef()) {
      if (auto t = first_tensor(e); t.defined()) return t;
    }
  }
  return {};
}

// The backward of the sum of `out` (the first output tensor of a forward run with autograd), as training
// would run it: throws partita::Error when LibTorch's autograd refuses it. The parameters' gradients are
// dropped after.
void check_backward_runs(const LoadedModel& model, const torch::Tensor& out) {
  const auto drop_gradients = [&] {
    for (const auto& p : model.parameters) {
      if (p.grad().defined()) p.mutable_grad().reset();
    }
  };
  try {
    if (out.defined() && out.requires_grad()) out.sum().backward();
  } catch (const c10::Error& e) {
    drop_gradients();
    PARTITA_FAIL("cannot train ", model.path, ": LibTorch's autograd refuses its backward (", first_line(e),
                 "); PyTorch's own training of this model fails the same way: an in-place write (x.mul_, "
                 "x[:, :8] = ..., relu(inplace=True)) changes a tensor that an earlier op saved for its "
                 "gradient. Make that write out of place, or leave out --train");
  }
  drop_gradients();
}

// One forward with autograd recording, watched for the first node whose output has no derivative.
struct RecordedForward {
  torch::Tensor first_output;
  std::optional<NodeWithoutDerivative> without_derivative;
};
RecordedForward run_recorded_forward(const LoadedModel& model, const std::vector<InputSpec>& specs) {
  torch::AutoGradMode grad(true);
  const Executor executor(model);
  std::vector<c10::IValue> inputs;
  for (auto& t : make_inputs(specs)) inputs.emplace_back(std::move(t));
  DerivativeFinder finder;
  RecordedForward out;
  out.first_output = first_tensor(executor.run(inputs, &finder).at(0));
  out.without_derivative = finder.found;
  return out;
}

}  // namespace

std::optional<NodeWithoutDerivative> first_node_without_derivative(const LoadedModel& model,
                                                                   const std::vector<InputSpec>& specs) {
  return run_recorded_forward(model, specs).without_derivative;
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
  // One forward serves both checks: a node without a derivative, then the backward itself.
  const RecordedForward forward = run_recorded_forward(model, specs);
  const auto& missing = forward.without_derivative;
  if (!missing) {
    check_backward_runs(model, forward.first_output);
    return;
  }
  PARTITA_FAIL("cannot train ", model.path, ": ", describe_node(model.ir.node(missing->node)),
               " has no gradient in LibTorch (", missing->message,
               "); a fused inference kernel like this one is what torch.nn traces in eval mode under "
               "torch.no_grad(): trace the model in training mode (model.train()) to train it, or leave out "
               "--train");
}

}  // namespace partita

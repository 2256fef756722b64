#pragma once
// Backward from a stage's roots (the tensors it sent on, its loss) without holding them while it runs.
//
// torch::autograd::backward(roots, grads) keeps its arguments until it returns, and a runner that kept the
// roots in its own per-microbatch state keeps them longer still: a sent tensor then lives through the
// stage's whole backward. Run on one device, the same tensor dies as soon as the last node that saved it
// has run its backward (autograd frees a node's saved tensors right after the node ran). The memory model
// (libs/cost, libs/search) assumes the latter, so every runner goes back through this function.
#include <vector>

#include <torch/types.h>

namespace partita::detail {

// Runs backward from `roots` with gradients `grads` (same length, each grad defined and shaped like its
// root), accumulating into the leaves' .grad(). Takes the caller's references: `roots` is empty when it
// returns, and it holds none while autograd runs (the gradients stay: autograd's graph root keeps them until
// backward ends). The caller must hold no other reference to a root for it to die early. Errors of autograd
// propagate unchanged, and a root that requires no gradient is refused as torch::autograd::backward refuses
// it (a c10::Error).
void backward_from(std::vector<torch::Tensor>& roots, std::vector<torch::Tensor> grads);

}  // namespace partita::detail

#pragma once
// torch::optim optimizers for partita's Optimizer choice (the same enum the memory model uses), so the engine
// and the plain-LibTorch baseline take identical steps.
#include <functional>
#include <memory>
#include <vector>

#include <torch/optim.h>

#include "partita/cost/memory.h"

namespace partita {

// The learning rate a run uses when none is given: PyTorch's default for Adam and AdamW (1e-3), 0.01 for SGD
// (which has none). One rate for all four (0.01) made Adam's first steps on a fresh EfficientNet-B0 jump
// from loss 2.30 to 0.76 and then 25.3, in PyTorch too.
double default_learning_rate(Optimizer kind);

// SGD, SGD with momentum 0.9, Adam or AdamW over `params` at learning rate `lr`.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(Optimizer kind, std::vector<torch::Tensor> params,
                                                        double lr);

// What `optimizer` keeps for `param` (null when it has nothing yet), whatever the LibTorch version keys it
// by.
torch::optim::OptimizerParamState* parameter_state(torch::optim::Optimizer& optimizer,
                                                   const torch::Tensor& param);
// Replaces what `optimizer` keeps for `param` with `state`; null drops it.
void set_parameter_state(torch::optim::Optimizer& optimizer, const torch::Tensor& param,
                         std::unique_ptr<torch::optim::OptimizerParamState> state);

// Takes what `optimizer` keeps for `param` out of it (null when it has nothing yet).
std::unique_ptr<torch::optim::OptimizerParamState> take_parameter_state(torch::optim::Optimizer& optimizer,
                                                                        const torch::Tensor& param);

// Replaces every state tensor `optimizer` keeps for `param` (SGD's momentum buffer, Adam's and AdamW's
// moments; undefined ones stay) with f(tensor). Returns false when it keeps nothing for `param` yet (it has
// not stepped it). Throws partita::Error for an optimizer type other than those make_optimizer makes.
bool map_parameter_state(torch::optim::Optimizer& optimizer, const torch::Tensor& param,
                         const std::function<torch::Tensor(const torch::Tensor&)>& f);

// Moves what `optimizer` keeps for `param` (SGD's momentum buffer, Adam's and AdamW's moments) to `device`,
// where the parameter now lives: the engine keeps a GPU stage's parameters and their optimizer state on the
// GPU and brings them home when it ends. Returns false when the optimizer holds nothing for `param` yet (it
// has not stepped it). Throws partita::Error for an optimizer type other than those make_optimizer makes.
bool move_parameter_state(torch::optim::Optimizer& optimizer, const torch::Tensor& param,
                          torch::Device device);

// Clears the gradients of `optimizer`'s parameters for the next step: zeroes in place, keeping the tensor,
// each one `keep` is true for (a gradient reducer's buckets hold it: autograd accumulates into it), and sets
// the others to none (what Optimizer::zero_grad() does by default since LibTorch 2.0).
void clear_gradients(torch::optim::Optimizer& optimizer,
                     const std::function<bool(const torch::Tensor&)>& keep);

// Gives every state tensor of `optimizer` (momentum buffers, Adam's and AdamW's moments) a fresh copy of
// itself to go on with, so that whoever still holds the old tensors (a checkpoint snapshot being written)
// sees them no longer change. Throws partita::Error for an optimizer type other than those make_optimizer
// makes.
void copy_state_tensors(torch::optim::Optimizer& optimizer);

}  // namespace partita

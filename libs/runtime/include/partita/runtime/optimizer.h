#pragma once
// torch::optim optimizers for partita's Optimizer choice (the same enum the memory model uses), so the engine
// and the plain-LibTorch baseline take identical steps.
#include <memory>
#include <vector>

#include <torch/optim.h>

#include "partita/cost/memory.h"

namespace partita {

// SGD, SGD with momentum 0.9, Adam or AdamW over `params` at learning rate `lr`.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(Optimizer kind, std::vector<torch::Tensor> params,
                                                        double lr);

}  // namespace partita

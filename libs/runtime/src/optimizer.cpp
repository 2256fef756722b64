#include "partita/runtime/optimizer.h"

#include "partita/core/error.h"

namespace partita {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(Optimizer kind, std::vector<torch::Tensor> params,
                                                        double lr) {
  switch (kind) {
    case Optimizer::kSgd:
      return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(lr));
    case Optimizer::kSgdMomentum:
      return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(lr).momentum(0.9));
    case Optimizer::kAdam:
      return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(lr));
    case Optimizer::kAdamW:
      return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(lr));
  }
  PARTITA_FAIL("unknown optimizer");
}

}  // namespace partita

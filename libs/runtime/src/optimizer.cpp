#include "partita/runtime/optimizer.h"

#include <sstream>
#include <string>
#include <type_traits>

#include "partita/core/error.h"

namespace partita {

double default_learning_rate(Optimizer kind) {
  return kind == Optimizer::kAdam || kind == Optimizer::kAdamW ? 1e-3 : 0.01;
}

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

namespace {

// torch::optim keys a parameter's state by its TensorImpl: the address printed as a string up to LibTorch
// 1.13 (what c10::guts::to_string writes), the address itself in later versions.
template <typename Key>
Key state_key(const torch::Tensor& param) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream out;
    out << static_cast<const void*>(param.unsafeGetTensorImpl());
    return out.str();
  } else {
    return static_cast<Key>(param.unsafeGetTensorImpl());
  }
}

torch::Tensor copied(const torch::Tensor& t) { return t.defined() ? t.clone() : t; }

}  // namespace

torch::optim::OptimizerParamState* parameter_state(torch::optim::Optimizer& optimizer,
                                                   const torch::Tensor& param) {
  auto& states = optimizer.state();
  using Key = typename std::decay_t<decltype(states)>::key_type;
  const auto it = states.find(state_key<Key>(param));
  return it == states.end() ? nullptr : it->second.get();
}

void set_parameter_state(torch::optim::Optimizer& optimizer, const torch::Tensor& param,
                         std::unique_ptr<torch::optim::OptimizerParamState> state) {
  auto& states = optimizer.state();
  using Key = typename std::decay_t<decltype(states)>::key_type;
  if (state) {
    states[state_key<Key>(param)] = std::move(state);
  } else {
    states.erase(state_key<Key>(param));
  }
}

std::unique_ptr<torch::optim::OptimizerParamState> take_parameter_state(torch::optim::Optimizer& optimizer,
                                                                        const torch::Tensor& param) {
  auto& states = optimizer.state();
  using Key = typename std::decay_t<decltype(states)>::key_type;
  const auto it = states.find(state_key<Key>(param));
  if (it == states.end()) return nullptr;
  std::unique_ptr<torch::optim::OptimizerParamState> taken = std::move(it->second);
  states.erase(it);
  return taken;
}

bool map_parameter_state(torch::optim::Optimizer& optimizer, const torch::Tensor& param,
                         const std::function<torch::Tensor(const torch::Tensor&)>& f) {
  torch::optim::OptimizerParamState* state = parameter_state(optimizer, param);
  if (state == nullptr) return false;
  const auto apply = [&f](const torch::Tensor& t) { return t.defined() ? f(t) : t; };
  if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(state)) {
    sgd->momentum_buffer(apply(sgd->momentum_buffer()));
  } else if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(state)) {
    adam->exp_avg(apply(adam->exp_avg()));
    adam->exp_avg_sq(apply(adam->exp_avg_sq()));
    adam->max_exp_avg_sq(apply(adam->max_exp_avg_sq()));
  } else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(state)) {
    adamw->exp_avg(apply(adamw->exp_avg()));
    adamw->exp_avg_sq(apply(adamw->exp_avg_sq()));
    adamw->max_exp_avg_sq(apply(adamw->max_exp_avg_sq()));
  } else {
    PARTITA_FAIL(
        "cannot move or split the state of this optimizer; use SGD, SGD with momentum, Adam or AdamW "
        "(make_optimizer)");
  }
  return true;
}

bool move_parameter_state(torch::optim::Optimizer& optimizer, const torch::Tensor& param,
                          torch::Device device) {
  return map_parameter_state(optimizer, param, [device](const torch::Tensor& t) { return t.to(device); });
}

void clear_gradients(torch::optim::Optimizer& optimizer,
                     const std::function<bool(const torch::Tensor&)>& keep) {
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      torch::Tensor& grad = p.mutable_grad();
      if (!grad.defined()) continue;
      if (keep(grad)) {
        grad.detach_();
        grad.zero_();
      } else {
        grad.reset();
      }
    }
  }
}

void copy_state_tensors(torch::optim::Optimizer& optimizer) {
  for (auto& [key, state] : optimizer.state()) {
    if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(state.get())) {
      sgd->momentum_buffer(copied(sgd->momentum_buffer()));
    } else if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(state.get())) {
      adam->exp_avg(copied(adam->exp_avg()));
      adam->exp_avg_sq(copied(adam->exp_avg_sq()));
      adam->max_exp_avg_sq(copied(adam->max_exp_avg_sq()));
    } else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(state.get())) {
      adamw->exp_avg(copied(adamw->exp_avg()));
      adamw->exp_avg_sq(copied(adamw->exp_avg_sq()));
      adamw->max_exp_avg_sq(copied(adamw->max_exp_avg_sq()));
    } else {
      PARTITA_FAIL(
          "cannot copy the state of this optimizer; use SGD, SGD with momentum, Adam or AdamW "
          "(make_optimizer)");
    }
  }
}

}  // namespace partita

#include "partita/runtime/parameter_handover.h"

#include <memory>
#include <string>

#include "partita/core/error.h"
#include "partita/runtime/distributed_group.h"
#include "partita/runtime/optimizer.h"

namespace partita {

namespace {

enum class Kind { kSgd, kSgdMomentum, kAdam, kAdamW };

Kind kind_of(torch::optim::Optimizer& optimizer) {
  if (auto* sgd = dynamic_cast<torch::optim::SGD*>(&optimizer)) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(sgd->param_groups().at(0).options());
    return o.momentum() != 0 ? Kind::kSgdMomentum : Kind::kSgd;
  }
  if (auto* adam = dynamic_cast<torch::optim::Adam*>(&optimizer)) {
    const auto& o = static_cast<const torch::optim::AdamOptions&>(adam->param_groups().at(0).options());
    PARTITA_CHECK(!o.amsgrad(), "handing parameters over: Adam with amsgrad is not supported");
    return Kind::kAdam;
  }
  if (auto* adamw = dynamic_cast<torch::optim::AdamW*>(&optimizer)) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(adamw->param_groups().at(0).options());
    PARTITA_CHECK(!o.amsgrad(), "handing parameters over: AdamW with amsgrad is not supported");
    return Kind::kAdamW;
  }
  PARTITA_FAIL("handing parameters over needs SGD, SGD with momentum, Adam or AdamW (make_optimizer)");
}

// What travels for one parameter: whether its owner has optimizer state, its value, then the state (SGD with
// momentum: the buffer; Adam and AdamW: the step count, as a double, and both moments).
struct Parcel {
  torch::Tensor has_state, value;
  std::vector<torch::Tensor> state;
};

template <typename State>
void pack_adam(const State* s, Parcel& p) {
  p.state = {torch::full({1}, s ? static_cast<double>(s->step()) : 0.0, torch::kFloat64),
             s ? s->exp_avg().clone() : torch::zeros_like(p.value),
             s ? s->exp_avg_sq().clone() : torch::zeros_like(p.value)};
}

template <typename State>
std::unique_ptr<State> unpack_adam(const Parcel& p) {
  auto s = std::make_unique<State>();
  s->step(static_cast<int64_t>(p.state[0].item<double>()));
  s->exp_avg(p.state[1]);
  s->exp_avg_sq(p.state[2]);
  return s;
}

}  // namespace

void hand_over_parameters(DistributedGroup& group, const std::vector<torch::Tensor>& params,
                          torch::optim::Optimizer& optimizer, const std::vector<int>& owner,
                          const std::vector<bool>& keep, int step) {
  PARTITA_CHECK(owner.size() == params.size() && keep.size() == params.size(),
                "handing parameters over: ", params.size(), " parameters but ", owner.size(), " owners and ",
                keep.size(), " keep flags");
  const Kind kind = kind_of(optimizer);
  const int rank = group.rank();
  torch::NoGradGuard no_grad;

  std::vector<Parcel> parcels(params.size());
  std::vector<torch::Tensor> flat;  // every tensor of every parcel, summed in one collective
  for (size_t k = 0; k < params.size(); ++k) {
    PARTITA_CHECK(owner[k] >= -1 && owner[k] < group.world_size(), "handing parameters over: parameter ", k,
                  " has owner ", owner[k], " in a job of ", group.world_size(), " ranks");
    if (owner[k] < 0) continue;
    const bool mine = owner[k] == rank;
    Parcel& p = parcels[k];
    torch::optim::OptimizerParamState* had = mine ? parameter_state(optimizer, params[k]) : nullptr;
    const bool stated = had != nullptr;
    p.has_state = torch::full({1}, stated ? 1.0 : 0.0, torch::kFloat64);
    p.value = mine ? params[k].detach().clone() : torch::zeros_like(params[k]);
    switch (kind) {
      case Kind::kSgd:
        break;
      case Kind::kSgdMomentum: {
        const auto* s = static_cast<torch::optim::SGDParamState*>(had);
        p.state = {s && s->momentum_buffer().defined() ? s->momentum_buffer().clone()
                                                       : torch::zeros_like(p.value)};
        break;
      }
      case Kind::kAdam:
        pack_adam(static_cast<torch::optim::AdamParamState*>(had), p);
        break;
      case Kind::kAdamW:
        pack_adam(static_cast<torch::optim::AdamWParamState*>(had), p);
        break;
    }
    flat.push_back(p.has_state);
    flat.push_back(p.value);
    for (auto& t : p.state) flat.push_back(t);
  }
  group.allreduce_sum(flat, step, "handing parameters to their new stages");

  for (size_t k = 0; k < params.size(); ++k) {
    torch::Tensor param = params[k];
    if (owner[k] >= 0) {
      const Parcel& p = parcels[k];
      param.detach().copy_(p.value);
      std::unique_ptr<torch::optim::OptimizerParamState> state;
      if (p.has_state.item<double>() != 0) {
        switch (kind) {
          case Kind::kSgd:
            break;
          case Kind::kSgdMomentum: {
            auto s = std::make_unique<torch::optim::SGDParamState>();
            s->momentum_buffer(p.state[0]);
            state = std::move(s);
            break;
          }
          case Kind::kAdam:
            state = unpack_adam<torch::optim::AdamParamState>(p);
            break;
          case Kind::kAdamW:
            state = unpack_adam<torch::optim::AdamWParamState>(p);
            break;
        }
      }
      set_parameter_state(optimizer, param, std::move(state));
    }
    if (!keep[k]) {  // not this process's any more: the optimizer must not step it
      set_parameter_state(optimizer, param, nullptr);
      param.mutable_grad() = torch::Tensor();
    }
  }
}

}  // namespace partita

#include "optimizer_parts.h"

#include "partita/core/error.h"
#include "partita/runtime/optimizer.h"

namespace partita::detail {

namespace {

// An optimizer of `whole`'s kind over `groups`, with its defaults.
std::unique_ptr<torch::optim::Optimizer> same_kind(const torch::optim::Optimizer& whole,
                                                   std::vector<torch::optim::OptimizerParamGroup> groups) {
  using namespace torch::optim;
  if (dynamic_cast<const SGD*>(&whole) != nullptr)
    return std::make_unique<SGD>(std::move(groups), static_cast<const SGDOptions&>(whole.defaults()));
  if (dynamic_cast<const AdamW*>(&whole) != nullptr)
    return std::make_unique<AdamW>(std::move(groups), static_cast<const AdamWOptions&>(whole.defaults()));
  if (dynamic_cast<const Adam*>(&whole) != nullptr)
    return std::make_unique<Adam>(std::move(groups), static_cast<const AdamOptions&>(whole.defaults()));
  PARTITA_FAIL("cannot split the step of this optimizer; use SGD, SGD with momentum, Adam or AdamW");
}

}  // namespace

bool OptimizerParts::can_split(const torch::optim::Optimizer& whole) {
  using namespace torch::optim;
  return dynamic_cast<const SGD*>(&whole) != nullptr || dynamic_cast<const Adam*>(&whole) != nullptr ||
         dynamic_cast<const AdamW*>(&whole) != nullptr;
}

OptimizerParts::OptimizerParts(torch::optim::Optimizer& whole, const std::vector<int>& part_of, int parts)
    : whole_(whole) {
  PARTITA_CHECK(parts >= 1, "an optimizer split needs at least one part, got ", parts);
  for (const auto& group : whole.param_groups()) {
    group_sizes_.push_back(group.params().size());
    for (const auto& p : group.params()) tensors_.push_back(p.unsafeGetTensorImpl());
  }
  PARTITA_CHECK(part_of.size() == tensors_.size(), "an optimizer split names ", part_of.size(),
                " parameters' parts; the optimizer has ", tensors_.size());
  std::vector<std::vector<torch::optim::OptimizerParamGroup>> groups(static_cast<size_t>(parts));
  parts_.resize(static_cast<size_t>(parts));
  size_t i = 0;
  for (size_t g = 0; g < whole.param_groups().size(); ++g) {
    const auto& group = whole.param_groups()[g];
    std::vector<std::vector<torch::Tensor>> chosen(static_cast<size_t>(parts));
    for (const auto& p : group.params()) {
      const int k = part_of[i++];
      PARTITA_CHECK(k >= 0 && k < parts, "optimizer split: parameter ", i - 1, " goes to part ", k, " of ",
                    parts);
      chosen[static_cast<size_t>(k)].push_back(p);
    }
    for (size_t k = 0; k < chosen.size(); ++k) {
      if (chosen[k].empty()) continue;
      groups[k].emplace_back(std::move(chosen[k]), group.options().clone());
      parts_[k].groups.push_back(g);
    }
  }
  for (size_t k = 0; k < parts_.size(); ++k) {
    if (!groups[k].empty()) parts_[k].optimizer = same_kind(whole, std::move(groups[k]));
  }
}

bool OptimizerParts::made_for(const torch::optim::Optimizer& whole) const {
  if (&whole != &whole_ || whole.param_groups().size() != group_sizes_.size()) return false;
  size_t i = 0;
  for (size_t g = 0; g < group_sizes_.size(); ++g) {
    const auto& params = whole.param_groups()[g].params();
    if (params.size() != group_sizes_[g]) return false;
    for (const auto& p : params) {
      if (p.unsafeGetTensorImpl() != tensors_[i++]) return false;
    }
  }
  return true;
}

void OptimizerParts::lend() {
  for (Part& part : parts_) {
    if (!part.optimizer) continue;
    auto& groups = part.optimizer->param_groups();
    for (size_t j = 0; j < groups.size(); ++j) {
      groups[j].set_options(whole_.param_groups()[part.groups[j]].options().clone());
      for (const auto& p : groups[j].params()) {
        if (auto state = take_parameter_state(whole_, p))
          set_parameter_state(*part.optimizer, p, std::move(state));
      }
    }
  }
}

void OptimizerParts::step(int part) {
  auto& optimizer = parts_.at(static_cast<size_t>(part)).optimizer;
  if (optimizer) optimizer->step();
}

void OptimizerParts::give_back() {
  for (Part& part : parts_) {
    if (!part.optimizer) continue;
    for (const auto& group : part.optimizer->param_groups()) {
      for (const auto& p : group.params()) {
        if (auto state = take_parameter_state(*part.optimizer, p))
          set_parameter_state(whole_, p, std::move(state));
      }
    }
  }
}

}  // namespace partita::detail

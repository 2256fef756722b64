#include "../src/optimizer_parts.h"

#include <gtest/gtest.h>

#include <thread>

#include "partita/core/error.h"
#include "partita/runtime/optimizer.h"

namespace partita::detail {
namespace {

std::vector<torch::Tensor> fresh_parameters() {
  torch::manual_seed(7);
  std::vector<torch::Tensor> params;
  for (int64_t n : {64, 3, 200, 17, 5}) params.push_back(torch::randn({n}).requires_grad_(true));
  return params;
}

std::vector<torch::Tensor> clones(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().clone().requires_grad_(true));
  return out;
}

// The same gradients on both sets: a function of the step and of the parameter's current value.
void set_gradients(const std::vector<torch::Tensor>& params, int step) {
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].mutable_grad() = (params[i].detach() * 0.3 + 0.1 * (step + 1) - 0.05 * i).sin();
  }
}

void expect_identical(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
}

// Steps `whole` directly and a copy of it in parts on two threads, for 4 steps with a learning-rate change
// before the third; the parameters and the state come out bit for bit the same, the state back in the
// whole optimizer.
void expect_parts_step_like_the_whole(Optimizer kind) {
  const std::vector<torch::Tensor> a = fresh_parameters();
  const std::vector<torch::Tensor> b = clones(a);
  auto one = make_optimizer(kind, a, 0.05);
  auto split = make_optimizer(kind, b, 0.05);
  OptimizerParts parts(*split, {0, 1, 1, 0, 1}, 2);
  ASSERT_TRUE(parts.made_for(*split));
  for (int step = 0; step < 4; ++step) {
    if (step == 2) {
      for (auto* o : {one.get(), split.get()}) o->param_groups()[0].options().set_lr(0.01);
    }
    set_gradients(a, step);
    set_gradients(b, step);
    one->step();
    parts.lend();
    EXPECT_EQ(split->state().size(), 0u) << "every parameter's state is lent";
    std::thread other([&] { parts.step(1); });
    parts.step(0);
    other.join();
    parts.give_back();
    expect_identical(a, b);
    // Back with the whole optimizer, the first step's new state included (plain SGD keeps none).
    ASSERT_EQ(split->state().size(), kind == Optimizer::kSgd ? 0u : a.size());
  }
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<torch::Tensor> sa, sb;
    map_parameter_state(*one, a[i], [&](const torch::Tensor& t) { return sa.push_back(t), t; });
    map_parameter_state(*split, b[i], [&](const torch::Tensor& t) { return sb.push_back(t), t; });
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t k = 0; k < sa.size(); ++k) EXPECT_TRUE(torch::equal(sa[k], sb[k])) << "parameter " << i;
  }
}

TEST(OptimizerParts, SgdStepsLikeTheWholeOptimizer) { expect_parts_step_like_the_whole(Optimizer::kSgd); }
TEST(OptimizerParts, SgdMomentumStepsLikeTheWholeOptimizer) {
  expect_parts_step_like_the_whole(Optimizer::kSgdMomentum);
}
TEST(OptimizerParts, AdamStepsLikeTheWholeOptimizer) { expect_parts_step_like_the_whole(Optimizer::kAdam); }
TEST(OptimizerParts, AdamWStepsLikeTheWholeOptimizer) { expect_parts_step_like_the_whole(Optimizer::kAdamW); }

TEST(OptimizerParts, GroupsKeepTheirOwnOptions) {
  const std::vector<torch::Tensor> a = fresh_parameters();
  const std::vector<torch::Tensor> b = clones(a);
  const auto make = [](const std::vector<torch::Tensor>& p) {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(std::vector<torch::Tensor>{p[0], p[1]},
                        std::make_unique<torch::optim::AdamOptions>(0.1));
    groups.emplace_back(std::vector<torch::Tensor>{p[2], p[3], p[4]},
                        std::make_unique<torch::optim::AdamOptions>(0.001));
    return torch::optim::Adam(std::move(groups));
  };
  torch::optim::Adam one = make(a);
  torch::optim::Adam split = make(b);
  // Part 1 takes one parameter of each group, part 2 nothing, part 0 the rest.
  OptimizerParts parts(split, {0, 1, 1, 0, 0}, 3);
  EXPECT_FALSE(parts.empty(0));
  EXPECT_FALSE(parts.empty(1));
  EXPECT_TRUE(parts.empty(2));
  for (int step = 0; step < 3; ++step) {
    set_gradients(a, step);
    set_gradients(b, step);
    one.step();
    parts.lend();
    for (int k = 0; k < parts.size(); ++k) parts.step(k);
    parts.give_back();
    expect_identical(a, b);
  }
}

TEST(OptimizerParts, KnowsWhenTheOptimizerChanged) {
  std::vector<torch::Tensor> p = fresh_parameters();
  auto optimizer = make_optimizer(Optimizer::kAdam, p, 0.01);
  OptimizerParts parts(*optimizer, {0, 0, 1, 1, 0}, 2);
  EXPECT_TRUE(parts.made_for(*optimizer));
  auto other = make_optimizer(Optimizer::kAdam, p, 0.01);
  EXPECT_FALSE(parts.made_for(*other));
  optimizer->param_groups()[0].params()[2] = torch::zeros({200}, torch::requires_grad());
  EXPECT_FALSE(parts.made_for(*optimizer));
}

TEST(OptimizerParts, RefusesOtherOptimizersAndBadAssignments) {
  std::vector<torch::Tensor> p = fresh_parameters();
  auto adam = make_optimizer(Optimizer::kAdam, p, 0.01);
  EXPECT_THROW(OptimizerParts(*adam, {0, 1}, 2), Error);
  EXPECT_THROW(OptimizerParts(*adam, {0, 1, 2, 0, 1}, 2), Error);
  EXPECT_THROW(OptimizerParts(*adam, {0, 0, 0, 0, 0}, 0), Error);
  torch::optim::RMSprop rmsprop(p, torch::optim::RMSpropOptions(0.01));
  EXPECT_THROW(OptimizerParts(rmsprop, {0, 1, 0, 1, 0}, 2), Error);
}

}  // namespace
}  // namespace partita::detail

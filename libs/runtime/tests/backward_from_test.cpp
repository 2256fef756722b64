#include "../src/backward_from.h"

#include <gtest/gtest.h>

#include <torch/torch.h>

namespace partita::detail {
namespace {

// A root saved by its own grad_fn: relu keeps its result for backward. `before` feeds the relu, so its
// gradient hook runs after ReluBackward0 has run and released what it saved.
struct SavedRoot {
  torch::Tensor leaf;
  torch::Tensor before;
  torch::Tensor root;
};

SavedRoot saved_root() {
  torch::manual_seed(1);
  SavedRoot s;
  s.leaf = torch::randn({256}, torch::requires_grad());
  s.before = s.leaf * 3;
  s.root = torch::relu(s.before);
  return s;
}

// Whether the root's storage is still alive when backward reaches the node after its saver, with the root
// handed to `run` (which runs backward from it) and no other reference kept.
template <typename Run>
bool root_alive_after_its_saver(Run run) {
  SavedRoot s = saved_root();
  const auto storage = s.root.storage().getWeakStorageImpl();
  bool alive = false;
  s.before.register_hook([&](const torch::Tensor& g) {
    alive = !storage.expired();
    return g;
  });
  std::vector<torch::Tensor> roots{std::move(s.root)};
  run(roots);
  return alive;
}

// Why the function exists: torch::autograd::backward keeps its roots alive until it returns.
TEST(BackwardFrom, TorchBackwardKeepsARootItWasGivenToTheEnd) {
  EXPECT_TRUE(root_alive_after_its_saver(
      [](std::vector<torch::Tensor>& roots) { torch::autograd::backward(roots, {torch::ones({256})}); }));
}

TEST(BackwardFrom, ARootDiesWhenItsLastSaverHasRun) {
  EXPECT_FALSE(root_alive_after_its_saver([](std::vector<torch::Tensor>& roots) {
    backward_from(roots, {torch::ones({256})});
    EXPECT_TRUE(roots.empty());
  }));
}

// The same gradients as torch::autograd::backward: several roots over one graph, one of them a leaf,
// accumulated into .grad() that already holds a value.
TEST(BackwardFrom, AccumulatesTheGradientsTorchBackwardWould) {
  const auto run = [](bool ours) {
    torch::manual_seed(2);
    torch::Tensor w = torch::randn({4, 3}, torch::requires_grad());
    torch::Tensor b = torch::randn({3}, torch::requires_grad());
    w.mutable_grad() = torch::full({4, 3}, 0.5);
    torch::Tensor x = torch::randn({5, 4});
    torch::Tensor h = torch::tanh(x.matmul(w) + b);
    torch::Tensor y = h.sum(1);
    std::vector<torch::Tensor> roots{h, y, b};
    std::vector<torch::Tensor> grads{torch::randn({5, 3}), torch::randn({5}), torch::randn({3})};
    h = torch::Tensor();
    y = torch::Tensor();
    if (ours) {
      backward_from(roots, grads);
    } else {
      torch::autograd::backward(roots, grads);
    }
    return std::make_pair(w.grad().clone(), b.grad().clone());
  };
  const auto [w_ours, b_ours] = run(true);
  const auto [w_torch, b_torch] = run(false);
  EXPECT_TRUE(torch::equal(w_ours, w_torch));
  EXPECT_TRUE(torch::equal(b_ours, b_torch));
}

TEST(BackwardFrom, AGradientOfTheWrongShapeIsAutogradsError) {
  torch::Tensor w = torch::randn({3}, torch::requires_grad());
  std::vector<torch::Tensor> roots{w * 2};
  EXPECT_THROW(backward_from(roots, {torch::ones({4})}), c10::Error);
}

TEST(BackwardFrom, ARootWithoutHistoryIsRefusedAsTorchRefusesIt) {
  std::vector<torch::Tensor> roots{torch::ones({3})};
  try {
    backward_from(roots, {torch::ones({3})});
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not require grad"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace partita::detail

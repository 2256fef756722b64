#include "partita/runtime/activation_offload.h"

#include <gtest/gtest.h>

#include <thread>

#include <torch/torch.h>

namespace partita {

namespace {

// sin(x) * w: autograd saves x (for sin) and sin(x) and w (for the product).
torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& w) { return (x.sin() * w).sum(); }

struct Grads {
  torch::Tensor x, w;
};

Grads gradients(const torch::Tensor& x0, const torch::Tensor& w0, const std::vector<torch::Tensor>* keep,
                OffloadedActivations* tally) {
  torch::Tensor x = x0.clone().requires_grad_();
  torch::Tensor w = w0.clone().requires_grad_();
  torch::Tensor loss;
  {
    std::optional<ActivationOffloadScope> scope;
    if (tally != nullptr) scope.emplace(keep != nullptr ? *keep : std::vector<torch::Tensor>{w}, *tally);
    loss = forward(x, w);
  }
  loss.backward();
  return {x.grad(), w.grad()};
}

}  // namespace

TEST(ActivationOffload, CopiesWhatAutogradSavesInsideTheScopeAndKeepsTheMath) {
  ASSERT_FALSE(install_activation_offload().has_value()) << *install_activation_offload();
  const torch::Tensor x = torch::randn({16, 32});
  const torch::Tensor w = torch::randn({16, 32});
  const Grads plain = gradients(x, w, nullptr, nullptr);
  OffloadedActivations tally;
  const int64_t before = offloaded_tensors_total();
  const Grads offloaded = gradients(x, w, nullptr, &tally);  // keeps w: it stays where it is
  EXPECT_EQ(tally.tensors, 2);                               // x and sin(x)
  EXPECT_EQ(tally.bytes, 2 * 16 * 32 * 4);
  EXPECT_EQ(offloaded_tensors_total() - before, 2);
  EXPECT_TRUE(torch::equal(plain.x, offloaded.x));
  EXPECT_TRUE(torch::equal(plain.w, offloaded.w));

  OffloadedActivations all;
  const std::vector<torch::Tensor> none;
  gradients(x, w, &none, &all);
  EXPECT_EQ(all.tensors, 3);  // w too, when nothing is kept
}

TEST(ActivationOffload, NothingIsSavedThroughTheHooksOutsideAScope) {
  const torch::Tensor x = torch::randn({8, 8});
  const torch::Tensor w = torch::randn({8, 8});
  OffloadedActivations tally;
  const int64_t before = offloaded_tensors_total();
  {
    const ActivationOffloadScope scope({}, tally);
    // Another thread runs a plain forward and backward while this thread is inside a scope.
    std::thread other([&] { gradients(x, w, nullptr, nullptr); });
    other.join();
    EXPECT_EQ(offloaded_tensors_total(), before);
    EXPECT_EQ(tally.tensors, 0);
  }
  gradients(x, w, nullptr, nullptr);  // this thread, after its scope ended
  EXPECT_EQ(offloaded_tensors_total(), before);
  EXPECT_EQ(tally.tensors, 0);
}

TEST(ActivationOffload, InnermostScopeCountsAndOverlappingViewsStay) {
  OffloadedActivations outer_tally, inner_tally;
  const torch::Tensor a = torch::randn({4, 1}).requires_grad_();
  torch::Tensor loss;
  {
    const ActivationOffloadScope outer({}, outer_tally);
    {
      const ActivationOffloadScope inner({}, inner_tally);
      loss = a.sin().sum();  // saves a
    }
    // sin saves an expanded view (4 x 1000 elements over 4): copying it densely would take more host memory
    // than it takes where it is, so it stays; exp saves its result, a real tensor, which goes.
    loss = loss + a.expand({4, 1000}).sin().exp().sum();
  }
  EXPECT_EQ(inner_tally.tensors, 1);
  EXPECT_EQ(outer_tally.tensors, 1);  // the exp result; not the expanded view
  EXPECT_EQ(outer_tally.bytes, 4 * 1000 * 4);
  loss.backward();
  const torch::Tensor d = a.detach();
  const torch::Tensor expected = d.cos() + 1000 * d.sin().exp() * d.cos();
  EXPECT_TRUE(torch::allclose(a.grad(), expected, 1e-5, 1e-5));
}

}  // namespace partita

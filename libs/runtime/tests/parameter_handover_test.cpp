// hand_over_parameters: a parameter trained by one rank reaches the others with its optimizer state, exactly,
// so the rank that takes it over steps it as its owner would have.
#include "partita/runtime/parameter_handover.h"

#include <gtest/gtest.h>

#include <mutex>

#include "loopback_ranks.h"
#include "partita/core/error.h"
#include "partita/runtime/distributed_group.h"
#include "partita/runtime/optimizer.h"

namespace partita {
namespace {

using testing::env_for;
using testing::run_ranks;

// Three parameters, the same initial values on every rank (as every process loads the whole model), and the
// gradient of parameter k at step n. Drawn before the ranks' threads start (the generator is global).
struct Fixture {
  std::vector<torch::Tensor> initial;
  std::vector<std::vector<torch::Tensor>> grads;  // [k][n]
  Fixture() {
    torch::manual_seed(3);
    initial = {torch::randn({4, 3}), torch::randn({5}), torch::randn({2, 2})};
    for (const auto& t : initial) {
      grads.emplace_back();
      for (int n = 0; n < 5; ++n) grads.back().push_back(torch::randn(t.sizes()));
    }
  }
  std::vector<torch::Tensor> params() const {
    std::vector<torch::Tensor> p;
    for (const auto& t : initial) p.push_back(t.clone().set_requires_grad(true));
    return p;
  }
};

// One step of `optimizer` with gradients for the parameters in `which` only (the others have none).
void step(const Fixture& f, torch::optim::Optimizer& optimizer, std::vector<torch::Tensor>& p,
          const std::vector<size_t>& which, int n) {
  for (size_t k : which) p[k].mutable_grad() = f.grads[k][static_cast<size_t>(n)].clone();
  optimizer.step();
  for (size_t k : which) p[k].mutable_grad() = torch::Tensor();
}

class HandOver : public ::testing::TestWithParam<Optimizer> {};

// Rank 0 trains parameter 0, rank 1 parameter 1, nobody parameter 2. Then rank 0 takes parameter 1 over and
// rank 1 parameter 0: two more steps each must equal a single optimizer that stepped the parameter all along.
TEST_P(HandOver, TheNewOwnerGoesOnAsTheOldOneWould) {
  const Optimizer kind = GetParam();
  const Fixture f;
  std::vector<torch::Tensor> reference = f.params();
  auto ref_opt = make_optimizer(kind, reference, 0.05);
  for (int n = 0; n < 5; ++n) step(f, *ref_opt, reference, {0, 1}, n);

  std::mutex mutex;
  std::vector<std::vector<torch::Tensor>> after(2);
  std::vector<size_t> states_left(2);
  run_ranks(2, [&](int rank, int port) {
    DistributedGroup group(env_for(rank, 2, port));
    std::vector<torch::Tensor> p = f.params();
    auto opt = make_optimizer(kind, p, 0.05);
    const size_t mine = rank == 0 ? 0 : 1, theirs = 1 - mine;
    for (int n = 0; n < 3; ++n) step(f, *opt, p, {mine}, n);
    p[mine].mutable_grad() = torch::ones_like(p[mine]);  // a stale gradient the handover must drop
    std::vector<bool> keep(3, false);
    keep[theirs] = true;
    hand_over_parameters(group, p, *opt, {0, 1, -1}, keep, 3);
    EXPECT_FALSE(p[mine].grad().defined()) << "rank " << rank;
    for (int n = 3; n < 5; ++n) step(f, *opt, p, {theirs}, n);
    std::lock_guard<std::mutex> lock(mutex);
    after[static_cast<size_t>(rank)] = p;
    states_left[static_cast<size_t>(rank)] = opt->state().size();
  });
  // Rank 0 now holds parameter 1 as the reference after 5 steps (3 by rank 1, 2 by itself), rank 1 parameter
  // 0.
  EXPECT_TRUE(torch::equal(after[0][1], reference[1]));
  EXPECT_TRUE(torch::equal(after[1][0], reference[0]));
  // Nobody trained parameter 2: left as loaded.
  EXPECT_TRUE(torch::equal(after[0][2], f.initial[2]));
  EXPECT_TRUE(torch::equal(after[1][2], f.initial[2]));
  // Each rank keeps state only for the parameter it now trains (plain SGD keeps none).
  const size_t want = kind == Optimizer::kSgd ? 0 : 1;
  EXPECT_EQ(states_left[0], want);
  EXPECT_EQ(states_left[1], want);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, HandOver,
                         ::testing::Values(Optimizer::kSgd, Optimizer::kSgdMomentum, Optimizer::kAdam,
                                           Optimizer::kAdamW));

// Checked on every rank before anything is exchanged.
TEST(HandOverArguments, AreChecked) {
  const Fixture f;
  run_ranks(2, [&](int rank, int port) {
    DistributedGroup group(env_for(rank, 2, port));
    std::vector<torch::Tensor> p = f.params();
    auto opt = make_optimizer(Optimizer::kAdam, p, 0.05);
    EXPECT_THROW(hand_over_parameters(group, p, *opt, {0, 0}, {true, true, true}, 0), Error);
    EXPECT_THROW(hand_over_parameters(group, p, *opt, {0, 3, 0}, {true, true, true}, 0), Error);
  });
}

}  // namespace
}  // namespace partita

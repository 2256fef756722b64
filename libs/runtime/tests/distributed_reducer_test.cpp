#include "partita/runtime/distributed_reducer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <thread>

#include <torch/torch.h>

#include "loopback_ranks.h"
#include "partita/core/error.h"
#include "partita/runtime/distributed_launch.h"
#include "partita/runtime/optimizer.h"
#include "partita/search/graph_identity.h"
#include "partita/torch_bridge/model.h"

namespace partita {

namespace {

using testing::env_for;
using testing::run_ranks;

}  // namespace

TEST(PlanBuckets, FillsByDtypeUpToTheLimitAndSkipsUndefined) {
  const std::vector<torch::Tensor> t{
      torch::zeros({10}), torch::Tensor(),     torch::zeros({10}, torch::kFloat64),
      torch::zeros({10}), torch::zeros({100}), torch::zeros({5})};
  const auto b = plan_buckets(t, 80);  // two 40-byte floats fit; the 400-byte one gets its own bucket
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0], (std::vector<size_t>{0, 3}));
  EXPECT_EQ(b[1], (std::vector<size_t>{2}));
  EXPECT_EQ(b[2], (std::vector<size_t>{4}));
  EXPECT_EQ(b[3], (std::vector<size_t>{5}));
}

TEST(PlanBuckets, ReversedStartsFromTheLastTensorWithASmallerFirstBucket) {
  const std::vector<torch::Tensor> t{torch::zeros({10}), torch::zeros({10}), torch::Tensor(),
                                     torch::zeros({10}), torch::zeros({10})};
  const auto b = plan_buckets_reversed(t, 40, 80);  // first bucket: one 40-byte tensor, then two per bucket
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0], (std::vector<size_t>{4}));
  EXPECT_EQ(b[1], (std::vector<size_t>{3, 1}));
  EXPECT_EQ(b[2], (std::vector<size_t>{0}));
}

TEST(DistributedGradientReducer, SumsGradientsAndLossOverRanks) {
  run_ranks(2, [](int rank, int port) {
    DistributedGroup group(env_for(rank, 2, port));
    DistributedGradientReducer reducer(group, ReducerOptions{64});
    std::vector<torch::Tensor> params{torch::zeros({3, 4}), torch::zeros({50}), torch::zeros({2})};
    params[0].mutable_grad() = torch::full({3, 4}, 1.0 + rank);
    params[1].mutable_grad() = torch::arange(50, torch::kFloat32) * (rank + 1);
    const double loss = reducer.reduce(params, 0.25 + rank, 0);
    EXPECT_DOUBLE_EQ(loss, 1.5);
    EXPECT_TRUE(params[0].grad().equal(torch::full({3, 4}, 3.0)));
    EXPECT_TRUE(params[1].grad().equal(torch::arange(50, torch::kFloat32) * 3));
    EXPECT_FALSE(params[2].grad().defined());
    EXPECT_EQ(reducer.buckets_last_step(), 2);  // 48 bytes, then 200 bytes on their own
    EXPECT_EQ(reducer.bytes_copied_last_step(), 48 + 200);
  });
}

// After the first reduction the gradients live in the buckets (holds() says so): clear_gradients keeping
// what the reducer holds zeroes them there, autograd accumulates the next step's gradients into them, and the
// reducer copies nothing. A gradient reset to undefined is copied in again (and rebound) without rebuilding
// the buckets.
TEST(DistributedGradientReducer, GradientsStayInTheBucketsAcrossSteps) {
  run_ranks(2, [](int rank, int port) {
    DistributedGroup group(env_for(rank, 2, port));
    DistributedGradientReducer reducer(group, ReducerOptions{64});
    std::vector<torch::Tensor> params{
        (torch::arange(12, torch::kFloat32).reshape({3, 4}) * 0.1 - 0.5).requires_grad_(),
        torch::full({3}, 0.25).requires_grad_()};
    torch::optim::SGD opt(params, torch::optim::SGDOptions(0.05));
    auto local_loss = [](const std::vector<torch::Tensor>& p, int r, int step) {
      const auto x = torch::full({4}, 1.0 + r + 0.5 * step);
      return (torch::matmul(p[0], x) + p[1]).pow(2).sum();
    };
    for (int step = 0; step < 4; ++step) {
      // What the sum over ranks must be, from copies of this step's parameters.
      std::vector<torch::Tensor> want{torch::zeros({3, 4}), torch::zeros({3})};
      for (int r = 0; r < 2; ++r) {
        std::vector<torch::Tensor> copy{params[0].detach().clone().requires_grad_(),
                                        params[1].detach().clone().requires_grad_()};
        local_loss(copy, r, step).backward();
        want[0] += copy[0].grad();
        want[1] += copy[1].grad();
      }
      clear_gradients(opt, [&](const torch::Tensor& grad) { return reducer.holds(grad); });
      if (step == 3) params[1].mutable_grad() = torch::Tensor();
      local_loss(params, rank, step).backward();
      reducer.reduce(params, 0.0, step);
      EXPECT_TRUE(torch::allclose(params[0].grad(), want[0])) << step;
      EXPECT_TRUE(torch::allclose(params[1].grad(), want[1])) << step;
      const int64_t all = (12 + 3) * 4;
      EXPECT_EQ(reducer.bytes_copied_last_step(), step == 0 ? all : step == 3 ? 12 : 0) << step;
      // holds(): the gradients that live in a bucket (what the engine zeroes instead of dropping), no other.
      EXPECT_TRUE(reducer.holds(params[0].grad()) && reducer.holds(params[1].grad())) << step;
      EXPECT_FALSE(reducer.holds(params[0].grad().clone())) << step;
      EXPECT_FALSE(reducer.holds(torch::Tensor())) << step;
      opt.step();
    }
    EXPECT_EQ(reducer.bucket_rebuilds(), 1);
    EXPECT_EQ(reducer.buckets_last_step(), 1);  // 60 bytes fit one 64-byte bucket
  });
}

// Overlap: after the first (synchronous) step, buckets start as soon as their gradients are reported final,
// in bucket order whatever order each rank reports them in; a parameter reported by no hook (no gradient this
// step) keeps its gradient and is summed by finish(); one whose gradient appears outside the buckets is
// summed on its own, and the next step rebuilds the buckets and overlaps again.
TEST(DistributedGradientReducer, OverlappedStepsSumLikeTheSynchronousOne) {
  run_ranks(2, [](int rank, int port) {
    DistributedGroup group(env_for(rank, 2, port));
    DistributedGradientReducer reducer(group, ReducerOptions{16, 16});  // one 4-element gradient per bucket
    const int n = 5;
    std::vector<torch::Tensor> params;
    for (int i = 0; i < n; ++i) params.push_back(torch::zeros({4}));
    auto local = [&](int i, int step) { return torch::full({4}, 1.0 + i + 10 * step + 100 * rank); };
    auto want = [&](int i, int step) { return torch::full({4}, 2.0 * (1.0 + i + 10 * step) + 100.0); };
    for (int i = 0; i < n - 1; ++i) params[i].mutable_grad() = local(i, 0);  // the last one: no gradient yet
    EXPECT_FALSE(reducer.begin_backward(params, 0));                         // no buckets yet
    EXPECT_DOUBLE_EQ(reducer.reduce(params, 1.0, 0), 2.0);
    EXPECT_EQ(reducer.buckets_last_step(), n - 1);
    for (int step = 1; step <= 3; ++step) {
      for (auto& p : params) {
        if (p.grad().defined()) p.mutable_grad().zero_();
      }
      // Step 3 finds parameter 4's gradient outside the buckets: synchronous, with new buckets.
      const bool overlapped = reducer.begin_backward(params, step);
      EXPECT_EQ(overlapped, step != 3) << step;
      // Gradients accumulate in place (as autograd does into a bucket slot) and are reported: rank 0 from the
      // last parameter down, rank 1 in parameter order. Parameter 1 gets no gradient at step 2. Parameter 4
      // gets its first gradient at step 2, outside the buckets.
      std::vector<int> order{0, 1, 2, 3, 4};
      if (rank == 0) std::reverse(order.begin(), order.end());
      for (int i : order) {
        if (step == 2 && i == 1) continue;
        if (i == n - 1) {
          if (step < 2) continue;
          if (!params[i].grad().defined()) params[i].mutable_grad() = torch::zeros({4});
        }
        params[i].mutable_grad().add_(local(i, step));
        reducer.on_gradient_ready(static_cast<size_t>(i));
      }
      const double loss =
          overlapped ? reducer.finish(params, 0.5 + rank, step) : reducer.reduce(params, 0.5 + rank, step);
      EXPECT_DOUBLE_EQ(loss, 2.0) << step;
      for (int i = 0; i < n; ++i) {
        if (i == n - 1 && step < 2) {
          EXPECT_FALSE(params[i].grad().defined());
        } else if (step == 2 && i == 1) {
          EXPECT_TRUE(params[i].grad().equal(torch::zeros({4}))) << step << " " << i;
        } else {
          EXPECT_TRUE(params[i].grad().equal(want(i, step))) << step << " " << i << " " << params[i].grad();
        }
      }
      // Rank 0 reports the last bucket's gradient first, but the first bucket starts first.
      if (step == 1) {
        EXPECT_EQ(reducer.buckets_overlapped_last_step(), 4);
      }
    }
    EXPECT_EQ(reducer.bucket_rebuilds(), 2);
    EXPECT_EQ(reducer.buckets_last_step(), n);
    for (auto& p : params) p.mutable_grad().zero_();
    ASSERT_TRUE(reducer.begin_backward(params, 4));
    for (int i = 0; i < n; ++i) {
      params[i].mutable_grad().add_(local(i, 4));
      reducer.on_gradient_ready(static_cast<size_t>(i));
    }
    reducer.finish(params, 0.0, 4);
    EXPECT_EQ(reducer.buckets_overlapped_last_step(), n);
    EXPECT_EQ(reducer.bytes_copied_last_step(), 0);
    for (int i = 0; i < n; ++i) EXPECT_TRUE(params[i].grad().equal(want(i, 4))) << i;
  });
}

TEST(DistributedGroup, AMissingPeerIsNamedWithinTheTimeout) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string message;
  run_ranks(2, [&](int rank, int port) {
    DistributedEnv e = env_for(rank, 2, port);
    e.timeout = Seconds(3);
    DistributedGroup group(e);
    std::vector<torch::Tensor> x{torch::ones({4})};
    group.mark_step(0);
    group.allreduce_sum(x, 0, "warm-up");
    if (rank == 1) {
      std::this_thread::sleep_for(std::chrono::seconds(5));  // stalls past rank 0's timeout
      return;
    }
    try {
      group.mark_step(1);
      group.allreduce_sum(x, 1, "gradient all-reduce");
    } catch (const Error& err) {
      message = err.what();
    }
  });
  EXPECT_NE(message.find("rank 1 did not reach step 1"), std::string::npos) << message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
}

// Two engines, one replica each, joined by the Gloo reducer, train exactly like one engine running both
// replicas.
class TwoRankEngines : public ::testing::TestWithParam<ReducerOptions> {};

TEST_P(TwoRankEngines, MatchTheInProcessDataParallelEngine) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores for cpu:0 and cpu:1";
  const auto spec = parse_input_spec("16x64");
  auto load = [&] {
    LoadedModel m = load_model(std::string(PARTITA_MODELS_DIR) + "/mlp.pt");
    annotate_shapes(m, {spec});
    return m;
  };
  auto plan_for = [](const Graph& g) {
    Plan p;
    p.graph = graph_identity(g);
    p.mode = Mode::kTraining;
    p.strategy = StrategyKind::kData;
    p.optimizer = Optimizer::kAdam;
    p.global_batch = 16;
    p.microbatches = 2;  // gradients accumulate over the first; the second's backward finishes them
    p.groups = {DeviceGroup{{"cpu:0", "cpu:1"}, {5, 3}}};
    p.stages = {Stage{0, g.num_nodes() - 1, 0}};
    return p;
  };
  const ReducerOptions reducer_options = GetParam();
  constexpr int kSteps = 6;
  auto train = [&](Engine& engine) {
    StepInputs batch;
    batch.inputs = make_inputs({spec}, 11);
    batch.targets = engine.make_targets(batch.inputs, 12);
    std::vector<double> losses;
    for (int i = 0; i < kSteps; ++i) losses.push_back(engine.step(batch).loss);
    return losses;
  };
  LoadedModel single_model = load();
  Engine single(single_model, plan_for(single_model.ir));
  const std::vector<double> want = train(single);
  std::vector<std::vector<double>> got(2);
  run_ranks(2, [&](int rank, int port) {
    DistributedGroup group(env_for(rank, 2, port));
    DistributedGradientReducer reducer(group, reducer_options);
    LoadedModel m = load();
    EngineOptions o;
    o.local_replica = rank;
    o.reducer = &reducer;
    o.inline_lone_worker = rank == 1;
    Engine engine(m, plan_for(m.ir), o);
    ASSERT_EQ(engine.bindings().size(), 1u);
    got[static_cast<size_t>(rank)] = train(engine);
    // Small buckets: from the second step on, the first ones start during the backward (hooks).
    if (reducer_options.bucket_bytes < 4096 && reducer_options.overlap) {
      EXPECT_GT(reducer.buckets_overlapped_last_step(), 0);
    } else if (!reducer_options.overlap) {
      EXPECT_EQ(reducer.buckets_overlapped_last_step(), 0);
    }
    group.barrier("end");
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(got[static_cast<size_t>(r)].size(), want.size());
    for (int i = 0; i < kSteps; ++i)
      EXPECT_NEAR(got[static_cast<size_t>(r)][i], want[i], 1e-5 * std::abs(want[i])) << i;
  }
  EXPECT_LT(want.back(), want.front());
}

// Default buckets (the MLP's gradients fit one: no overlap), small buckets (overlapped with backward), and
// small buckets with overlap off.
INSTANTIATE_TEST_SUITE_P(Buckets, TwoRankEngines,
                         ::testing::Values(ReducerOptions{}, ReducerOptions{2048, 1024},
                                           ReducerOptions{2048, 1024, false}));

}  // namespace partita

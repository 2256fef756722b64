// Planning-time benchmark for the strategy search (a program, not a test: prints figures, medians of
// repeats).
//   1. a 24-layer GPT on 64 unequal devices (target <= 2 s)
//   2. GPT-3 175B (96 layers) on 1,024 GPUs of three kinds (target <= 30 s)
//   3. pipeline/hybrid DP vs brute force on hundreds of random small instances (agreement count)
//   4. 2 fast + 2 half-speed GPUs, 24-layer GPT: plan vs `even` vs comm-free ideal
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "partita/cost/compute.h"
#include "partita/search/blocks.h"
#include "partita/search/chain_plan.h"
#include "partita/search/hybrid_strategy.h"
#include "partita/search/model_spec.h"
#include "partita/search/pipeline_strategy.h"
#include "partita/search/planner.h"

using namespace partita;

namespace {

DeviceSpec gpu(const std::string& name, double tflops, double mem_gib, double tdp, double idle,
               double bw_tbs) {
  DeviceSpec s;
  s.name = name;
  s.peak_flops[DType::kFloat32] = FlopsPerSecond(tflops * 1e12);
  s.peak_flops[DType::kBFloat16] = FlopsPerSecond(tflops * 1e12);
  s.memory_bandwidth = BytesPerSecond(bw_tbs * 1e12);
  s.memory = Bytes(static_cast<int64_t>(mem_gib * (1 << 30)));
  s.tdp = Watts(tdp);
  s.idle_power = Watts(idle);
  return s;
}

// `per_node` devices per machine: NVLink inside, InfiniBand across.
Cluster cluster_of(const std::vector<std::pair<DeviceSpec, int>>& kinds, int per_node) {
  Cluster c;
  c.name = "bench";
  int i = 0;
  for (const auto& [spec, count] : kinds) {
    for (int k = 0; k < count; ++k, ++i) {
      c.devices.push_back(
          ClusterDevice{"n" + std::to_string(i / per_node) + "/gpu" + std::to_string(i % per_node),
                        "n" + std::to_string(i / per_node), spec});
    }
  }
  c.intra_node_link = LinkSpec{"NVLink", Seconds(3e-6), BytesPerSecond(300e9), "bench"};
  c.inter_node_link = LinkSpec{"InfiniBand", Seconds(5e-6), BytesPerSecond(50e9), "bench"};
  return c;
}

std::vector<DeviceSpec> specs_of(const Cluster& c) {
  std::vector<DeviceSpec> out;
  for (const auto& d : c.devices) {
    if (std::none_of(out.begin(), out.end(), [&](const DeviceSpec& s) { return s.name == d.spec.name; }))
      out.push_back(d.spec);
  }
  return out;
}

// --no-cut-refinement: plan with the chain partitioner's cuts as they are (to time the refinement).
bool g_refine_cuts = true;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void time_planning(const char* title, const Graph& g, const Cluster& c, SearchOptions o, int repeats) {
  o.refine_cuts = g_refine_cuts;
  const CostTable t = roofline_cost_table(g, specs_of(c));
  std::vector<double> times;
  PlanOutcome out;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    out = make_plan(g, c, t, o);
    times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  std::printf("%s: %d nodes, %zu devices: planning median %.3f s (min %.3f, max %.3f, %d runs)\n", title,
              g.num_nodes(), c.devices.size(), times[times.size() / 2], times.front(), times.back(), repeats);
  if (out.plan) {
    std::printf(
        "  chose %s: %zu stages, %d microbatches, step %.4f s, %.1f samples/s, %.0f J/step, %zu candidates\n",
        std::string(strategy_name(out.plan->strategy)).c_str(), out.plan->stages.size(),
        out.plan->microbatches, out.plan->prediction.step_time.value(),
        out.plan->prediction.samples_per_second, out.plan->prediction.energy.value(), out.candidates.size());
    // Tensor-parallel sizes of the stages' groups (replicas x size), and the comm-free ideal: every device
    // busy all the time on whole samples at its roofline speed.
    std::map<std::string, int> layouts;
    for (const auto& st : out.plan->stages) {
      const DeviceGroup& grp = out.plan->groups[static_cast<size_t>(st.group)];
      ++layouts[std::to_string(grp.replicas()) + "x" + std::to_string(grp.tensor_degree())];
    }
    std::string groups;
    for (const auto& [layout, n] : layouts) groups += " " + std::to_string(n) + " of " + layout;
    const StageModel model(g, c, t, o);
    double ideal = 0;
    for (int d = 0; d < model.num_devices(); ++d) ideal += 1.0 / model.sample_time(model.spec_of(d)).value();
    std::printf("  stage groups (replicas x tensor size):%s; %.1f%% of the comm-free ideal %.1f samples/s\n",
                groups.c_str(), 100 * out.plan->prediction.samples_per_second / ideal, ideal);
  } else {
    std::printf("  no plan: %s\n", out.error.c_str());
  }
}

Graph chain(std::mt19937& rng, int layers) {
  std::uniform_real_distribution<double> u(0, 1);
  Graph g;
  ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1, 16}, DType::kFloat32}};
  for (int i = 0; i < layers; ++i) {
    const ValueId w = g.add_parameter("w" + std::to_string(i), true);
    g.value(w).tensors = {TensorMeta{{4096 + static_cast<int64_t>(1e6 * u(rng))}, DType::kFloat32}};
    const ValueId y = g.add_value(ValueKind::kTensor, "y");
    g.value(y).tensors = {TensorMeta{{1, 1024 + static_cast<int64_t>(60000 * u(rng))}, DType::kFloat32}};
    const NodeId n = g.add_node("aten::linear", {x, w}, {y});
    g.node(n).cost = OpCost{Flops(1e9 + 9e9 * u(rng)), Bytes(0), Bytes(0), CostStatus::kEstimated};
    x = y;
  }
  g.set_outputs({x});
  return g;
}

void brute_force_agreement(int instances) {
  std::mt19937 rng(2024);
  std::uniform_real_distribution<double> u(0, 1);
  int pipe_agree = 0, hyb_agree = 0, pipe_cmp = 0, hyb_cmp = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < instances; ++i) {
    const Graph g = chain(rng, 1 + i % 12);
    const int n = 1 + i % 4;
    std::vector<std::pair<DeviceSpec, int>> kinds{{gpu("fast", 2 + 6 * u(rng), 1, 400, 80, 1e18), 0},
                                                  {gpu("slow", 1 + u(rng), 1, 300, 60, 1e18), 0}};
    Cluster c;
    c.name = "random";
    for (int d = 0; d < n; ++d) {
      c.devices.push_back(ClusterDevice{"d" + std::to_string(d), "n0", kinds[u(rng) < 0.5 ? 0 : 1].first});
    }
    c.intra_node_link = LinkSpec{"l", Seconds(3e-6), BytesPerSecond((1 + 40 * u(rng)) * 1e9), ""};
    const CostTable t = roofline_cost_table(g, specs_of(c));
    SearchOptions o;
    o.global_batch = 8;
    o.memory_limit = Bytes(static_cast<int64_t>((16 + 100 * u(rng)) * (1 << 20)));
    const StageModel model(g, c, t, o);
    const auto blocks = block_ends(model, 256);
    const int m = 1 << (i % 4);
    // Pipeline: DP over the planner's device orders vs brute force over every ordered subset and every cut.
    double want = -1;
    std::vector<int> all;
    for (int d = 0; d < n; ++d) all.push_back(d);
    for (unsigned mask = 1; mask < (1u << n); ++mask) {
      std::vector<int> sub;
      for (int d = 0; d < n; ++d)
        if (mask & (1u << d)) sub.push_back(d);
      do {
        ChainProblem p{&model, blocks, single_device_slots(model, sub), m, 8 / m, Schedule::kOneFOneB};
        if (auto s = partition_chain_brute_force(p); s && (want < 0 || s->bottleneck.value() < want))
          want = s->bottleneck.value();
      } while (std::next_permutation(sub.begin(), sub.end()));
    }
    const auto got = best_pipeline(model, blocks, m, Schedule::kOneFOneB);
    ++pipe_cmp;
    pipe_agree += (got.has_value() == (want >= 0)) && (!got || got->solution.bottleneck.value() == want);
    // Hybrid: DP vs brute force over the same layouts.
    const auto layouts = hybrid_layouts(model, static_cast<int>(blocks.size()));
    const TensorModel tensor(model);
    double hw = -1;
    for (const auto& slots : layouts) {
      ChainProblem p{&model, blocks, slots, m, 8 / m, Schedule::kOneFOneB, &tensor};
      if (auto s = partition_chain_brute_force(p); s && (hw < 0 || s->bottleneck.value() < hw))
        hw = s->bottleneck.value();
    }
    const auto hg = best_hybrid(model, tensor, blocks, layouts, m, Schedule::kOneFOneB);
    ++hyb_cmp;
    hyb_agree += (hg.has_value() == (hw >= 0)) && (!hg || hg->solution.bottleneck.value() == hw);
  }
  std::printf(
      "brute force agreement: pipeline %d/%d, hybrid %d/%d (<= 12 layers, <= 4 unequal devices, %.2f s)\n",
      pipe_agree, pipe_cmp, hyb_agree, hyb_cmp, seconds_since(t0));
}

void unequal_gpus(const Graph& g) {
  const Cluster c =
      cluster_of({{gpu("fast", 100, 80, 700, 100, 3.3), 2}, {gpu("half", 50, 80, 400, 60, 1.65), 2}}, 8);
  const CostTable t = roofline_cost_table(g, specs_of(c));
  SearchOptions o;
  o.global_batch = 32;
  o.max_blocks = 64;
  o.refine_cuts = g_refine_cuts;
  const auto best = make_plan(g, c, t, o);
  o.strategy = StrategyKind::kEven;
  const auto even = make_plan(g, c, t, o);
  const StageModel model(g, c, t, o);
  double ideal = 0;
  for (int d = 0; d < model.num_devices(); ++d) ideal += 1.0 / model.sample_time(model.spec_of(d)).value();
  if (!best.plan || !even.plan) {
    std::printf("2 fast + 2 half: no plan (%s / %s)\n", best.error.c_str(), even.error.c_str());
    return;
  }
  const double ours = best.plan->prediction.samples_per_second,
               base = even.plan->prediction.samples_per_second;
  std::printf(
      "2 fast + 2 half GPUs, 24-layer GPT, batch 32: plan %.2f samples/s (%s), even %.2f (%s): %.2fx even, "
      "%.1f%% of the comm-free ideal %.2f\n",
      ours, std::string(strategy_name(best.plan->strategy)).c_str(), base,
      std::string(strategy_name(even.plan->strategy)).c_str(), ours / base, 100 * ours / ideal, ideal);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--no-cut-refinement") {
      g_refine_cuts = false;
    } else {
      std::fprintf(stderr, "search_bench: unknown argument '%s' (the only one is --no-cut-refinement)\n",
                   argv[i]);
      return 2;
    }
  }
  const std::string models = std::string(PARTITA_SOURCE_DIR) + "/config/models/";
  const Graph gpt24 = build_model_graph(load_model_spec(models + "gpt-24layer.yaml"), 1);
  unequal_gpus(gpt24);
  brute_force_agreement(300);
  {
    const Cluster c = cluster_of({{gpu("H100", 989, 80, 700, 100, 3.35), 16},
                                  {gpu("A100", 312, 80, 400, 60, 2.0), 24},
                                  {gpu("V100", 125, 32, 300, 50, 0.9), 24}},
                                 8);
    SearchOptions o;
    o.global_batch = 512;
    o.max_blocks = 64;
    time_planning("24-layer GPT on 64 unequal devices", gpt24, c, o, 5);
  }
  {
    const Graph gpt3 = build_model_graph(load_model_spec(models + "gpt3-175b.yaml"), 1);
    const Cluster c = cluster_of({{gpu("H100", 989, 80, 700, 100, 3.35), 384},
                                  {gpu("A100", 312, 80, 400, 60, 2.0), 384},
                                  {gpu("V100", 125, 32, 300, 50, 0.9), 256}},
                                 8);
    SearchOptions o;
    o.global_batch = 1536;
    o.max_blocks = 192;
    time_planning("GPT-3 175B on 1,024 GPUs of three kinds", gpt3, c, o, 1);
  }
  return 0;
}

#include "partita/search/pipeline_strategy.h"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <set>
#include <string>

#include "partita/search/chain_plan.h"

namespace partita {

namespace {

// Orders that look the same to the cost model (same spec and same links at every position) are one order.
std::vector<std::vector<int>> unique_orders(const StageModel& model,
                                            const std::vector<std::vector<int>>& orders) {
  std::set<std::vector<std::string>> seen;
  std::vector<std::vector<int>> out;
  const auto& devs = model.cluster().devices;
  for (const auto& o : orders) {
    std::vector<std::string> key;
    for (size_t i = 0; i < o.size(); ++i) {
      key.push_back(std::to_string(model.spec_of(o[i])));
      if (i + 1 < o.size()) {
        const LinkSpec l = model.cluster().link_between(devs[static_cast<size_t>(o[i])].id,
                                                        devs[static_cast<size_t>(o[i + 1])].id);
        char buf[96];
        std::snprintf(buf, sizeof buf, "%.17g/%.17g", l.latency.value(), l.bandwidth.value());
        key.push_back(l.name + "/" + buf);
      }
    }
    // Memory caps differ per device only through its spec or the common limit, so spec + links is the
    // identity.
    if (seen.insert(key).second) out.push_back(o);
  }
  return out;
}

// Device orders to try (see the header).
std::vector<std::vector<int>> device_orders(const StageModel& model, int max_len) {
  const int k = model.num_devices();
  std::vector<int> all(static_cast<size_t>(k));
  std::iota(all.begin(), all.end(), 0);
  std::vector<std::vector<int>> orders;
  if (k <= kExhaustivePipelineDevices) {
    // Every ordered subset: permutations of each subset (bitmask, then next_permutation).
    for (unsigned mask = 1; mask < (1u << k); ++mask) {
      std::vector<int> sub;
      for (int i = 0; i < k; ++i) {
        if (mask & (1u << i)) sub.push_back(i);
      }
      if (static_cast<int>(sub.size()) > max_len) continue;
      do {
        orders.push_back(sub);
      } while (std::next_permutation(sub.begin(), sub.end()));
    }
    return unique_orders(model, orders);
  }
  auto by_speed = all;
  std::stable_sort(by_speed.begin(), by_speed.end(), [&](int a, int b) {
    return model.sample_time(model.spec_of(a)) < model.sample_time(model.spec_of(b));
  });
  auto slow_first = by_speed;
  std::reverse(slow_first.begin(), slow_first.end());
  for (const auto& base : {all, by_speed, slow_first}) {
    std::vector<int> lens;
    for (int p = 1; p < std::min(k, max_len); p *= 2) lens.push_back(p);
    lens.push_back(std::min(k, max_len));
    for (int p : lens) orders.emplace_back(base.begin(), base.begin() + p);
  }
  return orders;
}

}  // namespace

std::optional<PipelineChoice> best_pipeline(const StageModel& model, const std::vector<NodeId>& blocks,
                                            int microbatches, Schedule schedule) {
  std::optional<PipelineChoice> best;
  for (const auto& order : device_orders(model, static_cast<int>(blocks.size()))) {
    ChainProblem problem{&model,
                         blocks,
                         single_device_slots(model, order),
                         microbatches,
                         model.options().global_batch / microbatches,
                         schedule};
    auto sol = partition_chain(problem);
    if (!sol) continue;
    if (!best || sol->better_than(best->solution)) {
      best = PipelineChoice{std::move(problem), std::move(*sol)};
    }
  }
  return best;
}

std::vector<Plan> pipeline_candidates(const StageModel& model, const std::vector<NodeId>& blocks) {
  struct Scored {
    Seconds estimate;
    Plan plan;
  };
  std::vector<Scored> scored;
  for (int m : microbatch_candidates(model.options(), 1)) {
    auto choice = best_pipeline(model, blocks, m, Schedule::kOneFOneB);
    if (!choice) continue;
    Plan plan = chain_to_plan(choice->problem, choice->solution, StrategyKind::kPipeline);
    mark_unused_devices(
        plan, model.cluster(),
        "the pipeline's bottleneck did not improve with it (slow device or link, or too few blocks)");
    scored.push_back(Scored{choice->solution.estimate, std::move(plan)});
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const Scored& a, const Scored& b) { return a.estimate < b.estimate; });
  std::vector<Plan> out;
  for (auto& s : scored) out.push_back(std::move(s.plan));
  return out;
}

}  // namespace partita

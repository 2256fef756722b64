#include "partita/search/even_strategy.h"

#include <algorithm>
#include <numeric>

#include "partita/search/chain_plan.h"
#include "partita/search/data_parallel_strategy.h"

namespace partita {

std::optional<Plan> even_pipeline_plan(const StageModel& model) {
  std::vector<NodeId> heavy;
  for (const Node& n : model.graph().nodes()) {
    if (n.cost.flops.value() > 0) heavy.push_back(n.id);
  }
  if (heavy.empty()) heavy.push_back(0);
  const int p = std::min(model.num_devices(), static_cast<int>(heavy.size()));
  std::vector<int> order(static_cast<size_t>(p));
  std::iota(order.begin(), order.end(), 0);
  const auto ms = microbatch_candidates(model.options(), 1);
  int m = ms.front();
  for (int c : ms) {
    if (c <= 4 * p) m = c;
  }
  ChainProblem problem{&model,
                       {},
                       single_device_slots(model, order),
                       m,
                       model.options().global_batch / m,
                       Schedule::kOneFOneB};
  const int h = static_cast<int>(heavy.size());
  for (int j = 0; j + 1 < p; ++j)
    problem.block_ends.push_back(heavy[static_cast<size_t>((j + 1) * h / p)] - 1);
  problem.block_ends.push_back(model.num_nodes() - 1);
  ChainSolution sol;
  for (int j = 0; j < p; ++j) {
    const NodeId first = j == 0 ? 0 : problem.block_ends[static_cast<size_t>(j) - 1] + 1;
    auto st = evaluate_stage(problem, j, first, problem.block_ends[static_cast<size_t>(j)]);
    if (!st) return std::nullopt;
    sol.stages.push_back(*st);
  }
  Plan plan = chain_to_plan(problem, sol, StrategyKind::kEven);
  mark_unused_devices(plan, model.cluster(), "the even split has fewer FLOP-bearing nodes than devices");
  return plan;
}

std::vector<Plan> even_candidates(const StageModel& model) {
  std::vector<Plan> out;
  if (auto p = even_pipeline_plan(model)) out.push_back(std::move(*p));
  if (auto d = even_data_parallel_plan(model)) out.push_back(std::move(*d));
  return out;
}

}  // namespace partita

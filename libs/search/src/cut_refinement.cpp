#include "partita/search/cut_refinement.h"

#include <algorithm>
#include <cstddef>
#include <optional>
#include <utility>

#include "partita/core/error.h"
#include "partita/search/simulator.h"

namespace partita {

namespace {

struct Score {
  double primary = 0;
  double secondary = 0;
};

Score score_of(const Prediction& p, Objective objective) {
  const double time = p.step_time.value(), energy = p.energy.value();
  if (objective == Objective::kEnergy) return Score{energy, time};
  return Score{time, energy};
}

// Strictly better beyond rounding (a move that changes nothing must not count as progress).
bool better(const Score& a, const Score& b) {
  constexpr double kRelative = 1e-9;
  if (a.primary < b.primary * (1 - kRelative)) return true;
  if (a.primary > b.primary * (1 + kRelative)) return false;
  return a.secondary < b.secondary * (1 - kRelative);
}

}  // namespace

bool refinable(const Plan& plan) {
  const size_t cuts = plan.stages.empty() ? 0 : plan.stages.size() - 1;
  return cuts >= 1 && cuts <= static_cast<size_t>(kCutRefinementMaxCuts) && !plan.branch_layout() &&
         !plan.has_tensor_groups();
}

CutRefinement refine_cuts(Plan plan, const Graph& graph, const Cluster& cluster, const CostTable& table,
                          const SearchOptions& options, const std::vector<bool>& allowed,
                          int max_simulations) {
  PARTITA_ASSERT(allowed.size() == static_cast<size_t>(graph.num_nodes()), "one cut flag per node");
  CutRefinement out{std::move(plan), 0, 0};
  if (!refinable(out.plan)) return out;
  const bool check_hosts = options.memory_cap == MemoryCap::kDeviceAndLimit;
  // Allowed cut positions, ascending (the last node is never a cut: it ends the last stage).
  std::vector<NodeId> positions;
  for (NodeId n = 0; n + 1 < graph.num_nodes(); ++n) {
    if (allowed[static_cast<size_t>(n)]) positions.push_back(n);
  }
  Score current = score_of(out.plan.prediction, options.objective);
  while (out.simulations < max_simulations) {
    std::optional<Plan> best;
    Score best_score = current;
    for (size_t s = 0; s + 1 < out.plan.stages.size() && out.simulations < max_simulations; ++s) {
      const NodeId lo = out.plan.stages[s].first;     // stage s keeps at least its first node
      const NodeId hi = out.plan.stages[s + 1].last;  // stage s + 1 keeps at least its last node
      const NodeId cut = out.plan.stages[s].last;
      // The nearest allowed positions before and after the cut; a move goes 1, 2, 4, ... positions further.
      const std::ptrdiff_t before =
          std::lower_bound(positions.begin(), positions.end(), cut) - positions.begin() - 1;
      const std::ptrdiff_t after =
          std::upper_bound(positions.begin(), positions.end(), cut) - positions.begin();
      for (const int direction : {-1, +1}) {
        for (std::ptrdiff_t step = 1;; step *= 2) {
          const std::ptrdiff_t i = direction < 0 ? before - (step - 1) : after + (step - 1);
          if (i < 0 || i >= static_cast<std::ptrdiff_t>(positions.size())) break;
          const NodeId to = positions[static_cast<size_t>(i)];
          if (to < lo || to >= hi) break;
          if (out.simulations >= max_simulations) break;
          Plan moved = out.plan;
          moved.stages[s].last = to;
          moved.stages[s + 1].first = to + 1;
          const Simulation sim = simulate(moved, graph, cluster, table, options);
          ++out.simulations;
          if (!sim.fits_memory || (check_hosts && !sim.fits_host_memory)) continue;
          const Score sc = score_of(sim.prediction, options.objective);
          if (better(sc, best_score)) {
            best_score = sc;
            moved.prediction = sim.prediction;
            best = std::move(moved);
          }
        }
      }
    }
    if (!best) break;
    out.plan = std::move(*best);
    current = best_score;
    ++out.moves;
  }
  return out;
}

}  // namespace partita

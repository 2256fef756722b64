#include "partita/search/objective.h"

#include <algorithm>
#include <numeric>

namespace partita {

std::vector<size_t> rank_candidates(const std::vector<Plan>& c, Objective objective) {
  std::vector<size_t> idx(c.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto by_time = [&](size_t a, size_t b) {
    const auto& pa = c[a].prediction;
    const auto& pb = c[b].prediction;
    return pa.step_time < pb.step_time || (pa.step_time == pb.step_time && pa.energy < pb.energy);
  };
  auto by_energy = [&](size_t a, size_t b) {
    const auto& pa = c[a].prediction;
    const auto& pb = c[b].prediction;
    return pa.energy < pb.energy || (pa.energy == pb.energy && pa.step_time < pb.step_time);
  };
  if (objective == Objective::kTime) {
    std::stable_sort(idx.begin(), idx.end(), by_time);
  } else if (objective == Objective::kEnergy) {
    std::stable_sort(idx.begin(), idx.end(), by_energy);
  } else if (!c.empty()) {
    std::stable_sort(idx.begin(), idx.end(), by_time);
    const Seconds limit = c[idx[0]].prediction.step_time * (1.0 + kBalancedSlack);
    const auto split = std::stable_partition(idx.begin(), idx.end(),
                                             [&](size_t i) { return c[i].prediction.step_time <= limit; });
    std::stable_sort(idx.begin(), split, by_energy);
  }
  return idx;
}

std::vector<size_t> pareto_front(const std::vector<Plan>& c) {
  std::vector<size_t> front;
  for (size_t i : rank_candidates(c, Objective::kTime)) {
    // Ascending time: a candidate is on the front when it uses less energy than every faster one.
    if (front.empty() || c[i].prediction.energy < c[front.back()].prediction.energy) front.push_back(i);
  }
  return front;
}

}  // namespace partita

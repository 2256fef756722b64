#pragma once
// Ranking evaluated candidates by objective, and their time/energy Pareto front.
#include <cstddef>
#include <vector>

#include "partita/search/plan.h"

namespace partita {

// Fraction of the fastest step time within which kBalanced looks for the least energy.
inline constexpr double kBalancedSlack = 0.05;

// Candidate indices, best first. kTime: step time (then energy); kEnergy: J/step (then time); kBalanced:
// those within kBalancedSlack of the fastest by energy, then the rest by time. Stable: ties keep input order.
std::vector<size_t> rank_candidates(const std::vector<Plan>& candidates, Objective objective);

// Indices of candidates no other candidate beats in both step time and energy (ascending step time).
std::vector<size_t> pareto_front(const std::vector<Plan>& candidates);

}  // namespace partita

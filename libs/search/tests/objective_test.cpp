#include "partita/search/objective.h"

#include <gtest/gtest.h>

namespace partita {
namespace {

Plan with(double time, double energy) {
  Plan p;
  p.prediction.step_time = Seconds(time);
  p.prediction.energy = Joules(energy);
  return p;
}

TEST(Objective, RanksByTimeEnergyAndBalanced) {
  const std::vector<Plan> c{with(1.00, 100), with(1.04, 60), with(1.50, 40), with(1.02, 90)};
  EXPECT_EQ(rank_candidates(c, Objective::kTime).front(), 0u);
  EXPECT_EQ(rank_candidates(c, Objective::kEnergy).front(), 2u);
  EXPECT_EQ(rank_candidates(c, Objective::kBalanced).front(), 1u);  // least energy within 5 % of fastest
}

TEST(Objective, ParetoFrontDropsDominated) {
  const std::vector<Plan> c{with(1.0, 100), with(2.0, 120), with(1.5, 50), with(3.0, 40)};
  EXPECT_EQ(pareto_front(c), (std::vector<size_t>{0, 2, 3}));
}

}  // namespace
}  // namespace partita

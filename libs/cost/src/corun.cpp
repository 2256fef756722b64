#include "partita/cost/corun.h"

#include <algorithm>
#include <cmath>

#include "partita/core/error.h"
#include "partita/core/statistics.h"

namespace partita {
namespace {

void check_times(const std::vector<double>& times, const char* what) {
  for (double t : times)
    PARTITA_CHECK(std::isfinite(t) && t > 0, "co-run sample: a ", what, " step time is ", t,
                  " s; step times must be positive");
}

}  // namespace

CoRunSlowdown corun_slowdown(const std::vector<CoRunRound>& rounds) {
  PARTITA_CHECK(!rounds.empty(), "co-run sample: no round measured");
  const size_t workers = rounds.front().together.empty() ? 0 : rounds.front().together.front().size();
  PARTITA_CHECK(workers >= 1, "co-run sample: the first round has no together step with worker times");
  std::vector<std::vector<double>> per_worker(workers);
  CoRunSlowdown out;
  for (const auto& round : rounds) {
    PARTITA_CHECK(!round.alone.empty(), "co-run sample: a round has no step measured alone");
    PARTITA_CHECK(!round.together.empty(), "co-run sample: a round has no step with the workers together");
    check_times(round.alone, "lone");
    std::vector<double> first;
    for (const auto& step : round.together) {
      PARTITA_CHECK(step.size() == workers, "co-run sample: a together step has ", step.size(),
                    " worker times, the first had ", workers);
      check_times(step, "together");
      for (size_t w = 0; w < workers; ++w) per_worker[w].push_back(step[w]);
      first.push_back(step[0]);
    }
    out.round_contention.push_back(median_of(first) / median_of(round.alone));
  }
  std::vector<double> medians;
  for (const auto& times : per_worker) medians.push_back(median_of(times));
  std::vector<double> slowest;
  for (const auto& round : rounds) {
    for (const auto& step : round.together) {
      double worst = 0;
      for (size_t w = 0; w < workers; ++w) worst = std::max(worst, step[w] / medians[w]);
      slowest.push_back(worst);
    }
  }
  out.contention = std::max(1.0, median_of(out.round_contention));
  out.stragglers = median_of(slowest);
  return out;
}

}  // namespace partita

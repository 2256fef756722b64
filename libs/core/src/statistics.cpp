#include "partita/core/statistics.h"

#include <algorithm>
#include <cmath>

#include "partita/core/error.h"

namespace partita {

double median_of(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

RoundRatios round_ratios(const std::vector<double>& reference, const std::vector<double>& candidate) {
  PARTITA_CHECK(!reference.empty() && reference.size() == candidate.size(),
                "round ratios: ", reference.size(), " reference and ", candidate.size(),
                " candidate rounds; give both jobs the same number of rounds, at least one");
  RoundRatios out;
  for (size_t r = 0; r < reference.size(); ++r) {
    for (double t : {reference[r], candidate[r]})
      PARTITA_CHECK(std::isfinite(t) && t > 0, "round ratios: round ", r, " has a time of ", t,
                    "; round times must be positive");
    out.per_round.push_back(reference[r] / candidate[r]);
  }
  const auto [lowest, highest] = std::minmax_element(out.per_round.begin(), out.per_round.end());
  out.lowest = *lowest;
  out.highest = *highest;
  return out;
}

}  // namespace partita

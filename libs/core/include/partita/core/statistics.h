#pragma once
// Summaries of repeated measurements on a shared machine whose speed drifts: medians resist its outliers, and
// rounds of two jobs measured alternately pair each of one job's figures with one of the other's taken in the
// same stretch of time. Pure.
#include <vector>

namespace partita {

// Median of a list (the mean of the middle two for an even count); 0 for an empty one.
double median_of(std::vector<double> values);

// Two jobs measured side by side in alternating rounds. Round r's ratio is reference[r] / candidate[r]: the
// candidate's speedup in that round, above 1 when it was faster. A ratio pairs two windows taken seconds
// apart, so a change of the machine's speed between rounds cancels; one that hits one job's window and not
// the other's does not, and shows as rounds that disagree (a large spread).
struct RoundRatios {
  std::vector<double> per_round;
  double lowest = 0;
  double highest = 0;
  // highest / lowest - 1: 0 when every round gave the same ratio.
  double spread() const { return highest / lowest - 1.0; }
};

// Throws partita::Error when the lists are empty, differ in length, or hold a time that is not positive and
// finite.
RoundRatios round_ratios(const std::vector<double>& reference, const std::vector<double>& candidate);

}  // namespace partita

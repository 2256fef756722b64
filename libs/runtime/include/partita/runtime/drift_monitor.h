#pragma once
// Drift detection for dynamic rebalancing: compares each device's measured busy time per step with what the
// plan predicted for it, and says when one device has become slower than the others for several steps.
//
// Assumptions: the cost model may be off by a per-device factor from the start (a plan is never exact), so
// the monitor first learns each device's measured/predicted ratio over `reference_steps` steps and then
// watches how those ratios change. A change shared by every device (the whole machine slowed) needs no new
// partition and is ignored: only the slowdown of a device relative to the least slowed one counts.
#include <optional>
#include <string>
#include <vector>

#include "partita/core/units.h"

namespace partita {

struct DriftOptions {
  int reference_steps = 5;  // steps measured (after a start or a rebalance) before drift is judged
  double threshold = 1.3;   // a device this many times slower than the others (relative to the reference)
  int patience = 3;         // for this many steps in a row triggers a report
  void validate() const;    // throws partita::Error naming the field
};

struct DriftReport {
  // Per device (the monitor's order): how many times slower than at the reference, relative to the least
  // slowed device (so the minimum is 1), the median over the `patience` steps that triggered.
  std::vector<double> slowdown;
  std::string summary;  // "cpu:0 2.04x slower than the plan's reference (cpu:1 1.00x) for 3 steps"
};

class DriftMonitor {
 public:
  // `predicted_busy[i]`: the plan's busy time per step of device `devices[i]` (> 0). Throws partita::Error
  // when the sizes differ or a prediction is not positive.
  DriftMonitor(std::vector<std::string> devices, std::vector<Seconds> predicted_busy,
               DriftOptions options = {});

  // One step's measured busy time per device (same order). Returns a report when the drift persisted for
  // `patience` steps; the monitor then starts over (a new reference) as it would after a rebalance.
  std::optional<DriftReport> observe(const std::vector<Seconds>& measured_busy);
  // Forget everything and learn a new reference (after a new plan was applied).
  void restart(std::vector<Seconds> predicted_busy);
  bool has_reference() const { return !reference_.empty(); }

 private:
  std::vector<std::string> devices_;
  std::vector<Seconds> predicted_;
  DriftOptions options_;
  std::vector<std::vector<double>> warmup_ratios_;  // [step][device] while learning the reference
  std::vector<double> reference_;                   // [device] measured / predicted
  std::vector<std::vector<double>> streak_;         // [step][device] relative slowdowns above threshold
};

}  // namespace partita

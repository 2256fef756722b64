#pragma once
// Dynamic rebalancing for `partita run --rebalance`: watches each device's busy time per step against the
// plan (DriftMonitor), and when one device stays slower than the plan assumed, plans again with that
// device's costs stretched by the measured factor (device_slowdown.h) and hands the new plan to the caller,
// which applies it between steps (a new engine over the same model tensors and the same optimizer, so the
// math does not change: same microbatches, same optimizer state).
//
// Assumptions: the drift is a per-device slowdown that stretches every op alike; the new plan keeps the
// plan's strategy, microbatch count, schedule and optimizer, and is adopted only when the planner predicts it
// at least `min_gain` faster than the current plan under the same (stretched) costs.
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "partita/runtime/drift_monitor.h"
#include "partita/runtime/observer.h"
#include "partita/search/plan.h"
#include "planning_inputs.h"

namespace partita {
struct LoadedModel;
}

namespace partita::app {

struct RebalanceEvent {
  int step = 0;                     // the step after which the drift was reported (0-based, warm-up included)
  std::string drift;                // DriftReport::summary
  std::string from, to;             // stage layouts ("cpu:0 nodes 0-41; cpu:1 nodes 42-80")
  double predicted_current_ms = 0;  // the current plan under the measured slowdowns
  double predicted_new_ms = 0;      // the new plan under the same costs
  bool applied = false;
};

struct RebalanceOptions {
  DriftOptions drift;
  double min_gain = 0.05;  // adopt a new plan only when predicted at least this fraction faster
};

class Rebalancer : public RuntimeObserver {
 public:
  // Builds the planning inputs of `plan` from its source section (profiling the model's ops on this machine
  // when the plan was made with profiled costs: a few seconds). `model` must be the annotated model the plan
  // is for. Throws partita::Error when the plan has no source section.
  Rebalancer(LoadedModel& model, const Plan& plan, RebalanceOptions options = {});

  // Per-device busy time of forward and backward tasks (called from worker threads).
  void on_task_end(const TaskEvent& event) override;
  // After each step (on the caller's thread, with no step running): returns the plan to run from the next
  // step on when one device drifted and a better partition exists.
  std::optional<Plan> after_step(int step);
  const std::vector<RebalanceEvent>& events() const { return events_; }

 private:
  Plan plan_;
  PlanningInputs base_;                      // unstretched inputs
  std::map<std::string, double> slowdowns_;  // cumulative, per device, the least slowed at 1
  RebalanceOptions options_;
  std::vector<std::string> devices_;  // the current plan's used devices (monitor order)
  std::optional<DriftMonitor> monitor_;
  std::mutex mutex_;
  std::map<std::string, double> busy_s_;  // this step's busy seconds per device
  std::vector<RebalanceEvent> events_;

  void watch(const Plan& plan);
  PlanningInputs stretched() const;
};

// "cpu:0 nodes 0-41; cpu:1 nodes 42-80" (pipeline) or "cpu:0 4 + cpu:1 4 samples" (data parallel).
std::string stage_layout(const Plan& plan);

}  // namespace partita::app

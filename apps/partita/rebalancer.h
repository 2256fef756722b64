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
//
// Several processes (a data-parallel plan with one process per device): every process watches every device's
// busy time (RebalanceChannel::combine sums what each measured), so all of them see the same drift after the
// same step; rank 0 alone plans again, and its decision reaches the others (RebalanceChannel::share), who
// switch to the same plan between the same two steps. The processes stay on their devices: a data-parallel
// plan's new plan has the same devices (only the batch shares move), a pipeline's as many stages on the same
// devices (the cuts move, and the stages may change devices: a stage runs in the process holding its devices;
// the caller hands the moved layers' weights and optimizer state over, parameter_handover.h).
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "partita/core/json_io.h"
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
  // The job's processes run fixed devices (a rank per device of a data-parallel plan, or per stage of a
  // pipeline): only a plan whose stages have the current stages' devices can replace the current one
  // (on_the_same_devices, partita/search/plan.h).
  bool keep_devices = false;
};

// How the processes of a job agree on rebalancing. Called by every process after the same step.
class RebalanceChannel {
 public:
  virtual ~RebalanceChannel() = default;
  // This step's busy seconds of every device (the monitor's order) from each process's own figures (0 for the
  // devices a process does not run): the same result in every process.
  virtual std::vector<double> combine(std::vector<double> mine, int step) = 0;
  // Whether this process plans again (one process; rank 0 of a job).
  virtual bool plans() const = 0;
  // Whether other processes take part (then decisions travel as text through share()).
  virtual bool several_processes() const = 0;
  // The planning process's `decision`, in every process.
  virtual std::string share(const std::string& decision, int step) = 0;
  // Every process waits until the planning one has its planning inputs (profiling the model's ops may take
  // minutes, longer than a collective waits for a late peer).
  virtual void planner_ready() = 0;
};

// One process: nothing to exchange.
class LocalRebalanceChannel : public RebalanceChannel {
 public:
  std::vector<double> combine(std::vector<double> mine, int) override { return mine; }
  bool plans() const override { return true; }
  bool several_processes() const override { return false; }
  std::string share(const std::string& decision, int) override { return decision; }
  void planner_ready() override {}
};

class Rebalancer : public RuntimeObserver {
 public:
  // Builds the planning inputs of `plan` from its source section (profiling the model's ops on this machine
  // when the plan was made with profiled costs: a few seconds). `model` must be the annotated model the plan
  // is for. Throws partita::Error when the plan has no source section.
  // Only the process that plans (RebalanceChannel::plans) profiles. `channel`: null for one process; else it
  // must outlive the rebalancer.
  Rebalancer(LoadedModel& model, const Plan& plan, RebalanceOptions options = {},
             RebalanceChannel* channel = nullptr);

  // Per-device busy time of forward and backward tasks (called from worker threads).
  void on_task_end(const TaskEvent& event) override;
  // After each step (on the caller's thread, with no step running; in every process of a job, after the same
  // steps): returns the plan to run from the next step on when one device drifted and a better partition
  // exists.
  std::optional<Plan> after_step(int step);
  // After a step that is not watched (a warm-up step): forgets its busy times, so the first watched step
  // counts only its own.
  void skip_step();
  const std::vector<RebalanceEvent>& events() const { return events_; }

 private:
  // What rank 0 decided after a drift report (the event, and the plan to switch to when applied).
  struct Decision {
    RebalanceEvent event;
    std::optional<Plan> next;
  };

  Plan plan_;
  LocalRebalanceChannel local_channel_;
  RebalanceChannel* channel_;
  PlanningInputs base_;                      // unstretched inputs (the planning process only)
  std::map<std::string, double> slowdowns_;  // cumulative, per device, the least slowed at 1
  RebalanceOptions options_;
  std::vector<std::string> devices_;  // the current plan's used devices (monitor order)
  std::optional<DriftMonitor> monitor_;
  std::mutex mutex_;
  std::map<std::string, double> busy_s_;  // this step's busy seconds per device
  std::vector<RebalanceEvent> events_;

  void watch(const Plan& plan);
  PlanningInputs stretched() const;
  Decision decide(int step, const DriftReport& report);
};

// "cpu:0 nodes 0-41; cpu:1 nodes 42-80" (pipeline) or "cpu:0 4 + cpu:1 4 nodes 0-80" (data parallel: the
// samples of each device).
std::string stage_layout(const Plan& plan);

Json rebalance_event_to_json(const RebalanceEvent& event);
RebalanceEvent rebalance_event_from_json(const Json& json);  // throws partita::Error on a missing field

}  // namespace partita::app

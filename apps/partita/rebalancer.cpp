#include "rebalancer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/core/log.h"
#include "partita/runtime/engine.h"
#include "partita/search/device_slowdown.h"
#include "partita/search/planner.h"
#include "partita/search/simulator.h"
#include "partita/torch_bridge/model.h"

namespace partita::app {

std::string stage_layout(const Plan& plan) {
  std::string out;
  for (const Stage& st : plan.stages) {
    const DeviceGroup& g = plan.groups[st.group];
    std::string devices;
    for (size_t d = 0; d < g.devices.size(); ++d) {
      devices += fmt::format("{}{}", d ? " + " : "", g.devices[d]);
      if (g.devices.size() > 1) devices += fmt::format(" {}", g.batch_shares[d]);
    }
    out += fmt::format("{}{} nodes {}-{}", out.empty() ? "" : "; ", devices, st.first, st.last);
  }
  return out;
}

Rebalancer::Rebalancer(LoadedModel& model, const Plan& plan, RebalanceOptions options)
    : plan_(plan), options_(options) {
  PARTITA_CHECK(
      !plan.source.empty(),
      "--rebalance needs the plan's source section (model, inputs, devices) to plan again; make the "
      "plan with this version of partita plan");
  PARTITA_CHECK(options.min_gain >= 0 && options.min_gain < 1, "rebalance min_gain must be in [0, 1), got ",
                options.min_gain);
  base_ = make_planning_inputs(model.ir, plan.source);
  mark_batch_splittability(base_, model);
  base_.options.optimizer = plan.optimizer;  // before profiling: its update step is timed
  if (plan.source.cost == "profiled") {
    ProfiledCostOptions costs;
    costs.mode = plan.mode;
    apply_profiled_costs(base_, model, costs);
  }
  slowdowns_ = plan.source.device_slowdowns;
  base_.options.mode = plan.mode;
  base_.options.global_batch = plan.global_batch;
  base_.options.microbatches = plan.microbatches;
  base_.options.strategy = plan.strategy;
  if (plan.source.memory_limit) base_.options.memory_limit = plan.source.memory_limit;
  watch(plan);
}

void Rebalancer::watch(const Plan& plan) {
  devices_.clear();
  std::vector<Seconds> predicted;
  for (const auto& d : plan.prediction.devices) {
    if (d.busy.value() <= 0) continue;
    devices_.push_back(d.device);
    predicted.push_back(d.busy);
  }
  PARTITA_CHECK(!devices_.empty(), "--rebalance needs a plan with predicted busy times per device");
  monitor_.emplace(devices_, predicted, options_.drift);
}

PlanningInputs Rebalancer::stretched() const {
  PlanningInputs in = base_;
  in.source.device_slowdowns = slowdowns_;
  apply_device_slowdowns(in);
  return in;
}

void Rebalancer::on_task_end(const TaskEvent& event) {
  if (event.kind != EngineTaskKind::kForward && event.kind != EngineTaskKind::kBackward) return;
  std::lock_guard<std::mutex> lock(mutex_);
  busy_s_[event.device] += std::chrono::duration<double>(event.end - event.begin).count();
}

std::optional<Plan> Rebalancer::after_step(int step) {
  std::vector<Seconds> busy;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& d : devices_) busy.push_back(Seconds(busy_s_[d]));
    busy_s_.clear();
  }
  const std::optional<DriftReport> report = monitor_->observe(busy);
  if (!report) return std::nullopt;

  // Cumulative slowdowns, the least slowed device at 1.
  for (size_t i = 0; i < devices_.size(); ++i) {
    auto it = slowdowns_.find(devices_[i]);
    const double before = it == slowdowns_.end() ? 1.0 : it->second;
    slowdowns_[devices_[i]] = before * report->slowdown[i];
  }
  double least = std::numeric_limits<double>::infinity();
  for (const auto& [device, factor] : slowdowns_) least = std::min(least, factor);
  for (auto& [device, factor] : slowdowns_) factor /= least;
  for (auto it = slowdowns_.begin(); it != slowdowns_.end();) {
    it = std::abs(it->second - 1.0) < 1e-9 ? slowdowns_.erase(it) : std::next(it);
  }

  RebalanceEvent event;
  event.step = step;
  event.drift = report->summary;
  event.from = stage_layout(plan_);
  const PlanningInputs in = stretched();
  const Plan current = evaluate(plan_, in.graph, in.cluster, in.table, in.options);
  event.predicted_current_ms = to_milliseconds(current.prediction.step_time);
  const PlanOutcome outcome = make_plan(in.graph, in.cluster, in.table, in.options);
  if (!outcome.plan) {
    log_warning(fmt::format("rebalance: {}; no new plan: {}", report->summary, outcome.error));
    event.to = event.from;
    events_.push_back(event);
    return std::nullopt;
  }
  // The engine runs the new plan between steps: the best one it can run (a hybrid of tensor-parallel groups,
  // say, cannot run yet).
  const auto runnable = std::find_if(outcome.candidates.begin(), outcome.candidates.end(),
                                     [&](const Plan& p) { return !engine_refusal(p, in.graph).has_value(); });
  if (runnable == outcome.candidates.end()) {
    log_warning(fmt::format("rebalance: {}; no new plan the engine can run: {}", report->summary,
                            engine_refusal(*outcome.plan, in.graph).value_or("")));
    event.to = event.from;
    events_.push_back(event);
    return std::nullopt;
  }
  Plan next = *runnable;
  next.source = in.source;
  event.to = stage_layout(next);
  event.predicted_new_ms = to_milliseconds(next.prediction.step_time);
  event.applied = event.to != event.from &&
                  event.predicted_new_ms < (1.0 - options_.min_gain) * event.predicted_current_ms;
  log_info(fmt::format("rebalance after step {}: {}; {} -> {} (predicted {:.2f} -> {:.2f} ms){}", step + 1,
                       report->summary, event.from, event.to, event.predicted_current_ms,
                       event.predicted_new_ms, event.applied ? "" : "; kept the current plan"));
  events_.push_back(event);
  if (!event.applied) {
    plan_.source.device_slowdowns = slowdowns_;
    watch(plan_);
    return std::nullopt;
  }
  plan_ = next;
  watch(plan_);
  return next;
}

}  // namespace partita::app

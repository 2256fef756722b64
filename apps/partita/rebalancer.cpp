#include "rebalancer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/core/log.h"
#include "partita/graph/analysis.h"
#include "partita/runtime/engine.h"
#include "partita/search/cut_refinement.h"
#include "partita/search/device_slowdown.h"
#include "partita/search/plan_json.h"
#include "partita/search/planner.h"
#include "partita/search/simulator.h"
#include "partita/torch_bridge/model.h"

namespace partita::app {

namespace {
// Simulations for moving a pipeline's cuts across processes: a 3x slowdown moves a GPT cut by ~80 nodes,
// which takes several doubling moves of ~15 simulations each.
constexpr int kRebalanceCutSimulations = 400;
}  // namespace

std::string stage_layout(const Plan& plan) {
  std::string out;
  for (const Stage& st : plan.stages) {
    const DeviceGroup& g = plan.groups[st.group];
    std::string devices;
    for (size_t d = 0; d < g.devices.size(); ++d) {
      devices += fmt::format("{}{}", d ? " + " : "", g.devices[d]);
      if (g.devices.size() > 1) devices += fmt::format(" {}", g.batch_shares[d]);
    }
    // A branch stage's nodes are a list, not a range: say how many.
    out += st.explicit_nodes()
               ? fmt::format("{}{} {} nodes", out.empty() ? "" : "; ", devices, st.nodes.size())
               : fmt::format("{}{} nodes {}-{}", out.empty() ? "" : "; ", devices, st.first, st.last);
  }
  return out;
}

namespace {

// Whether two plans split the work alike: the same stages (node ranges, or node lists for branch plans) on
// the same devices with the same batch shares. (Their printed layouts may match when they do not: two branch
// plans with as many nodes per device.)
bool same_layout(const Plan& a, const Plan& b) {
  if (a.stages.size() != b.stages.size()) return false;
  for (size_t k = 0; k < a.stages.size(); ++k) {
    const Stage &x = a.stages[k], &y = b.stages[k];
    if (x.first != y.first || x.last != y.last || x.nodes != y.nodes) return false;
    const DeviceGroup &gx = a.groups.at(static_cast<size_t>(x.group)),
                      &gy = b.groups.at(static_cast<size_t>(y.group));
    if (gx.devices != gy.devices || gx.batch_shares != gy.batch_shares) return false;
  }
  return true;
}

}  // namespace

Json rebalance_event_to_json(const RebalanceEvent& e) {
  return {{"step", e.step},
          {"drift", e.drift},
          {"from", e.from},
          {"to", e.to},
          {"predicted_current_ms", e.predicted_current_ms},
          {"predicted_new_ms", e.predicted_new_ms},
          {"applied", e.applied}};
}

RebalanceEvent rebalance_event_from_json(const Json& j) {
  try {
    return RebalanceEvent{j.at("step").get<int>(),
                          j.at("drift").get<std::string>(),
                          j.at("from").get<std::string>(),
                          j.at("to").get<std::string>(),
                          j.at("predicted_current_ms").get<double>(),
                          j.at("predicted_new_ms").get<double>(),
                          j.at("applied").get<bool>()};
  } catch (const Json::exception& e) {
    PARTITA_FAIL("a rebalance event: ", e.what());
  }
}

Rebalancer::Rebalancer(LoadedModel& model, const Plan& plan, RebalanceOptions options,
                       RebalanceChannel* channel)
    : plan_(plan), channel_(channel != nullptr ? channel : &local_channel_), options_(options) {
  PARTITA_CHECK(
      !plan.source.empty(),
      "--rebalance needs the plan's source section (model, inputs, devices) to plan again; make the "
      "plan with this version of partita plan");
  PARTITA_CHECK(options.min_gain >= 0 && options.min_gain < 1, "rebalance min_gain must be in [0, 1), got ",
                options.min_gain);
  PARTITA_CHECK(
      !options.keep_devices || on_the_same_devices(plan, plan).has_value(),
      "--rebalance across processes moves a data-parallel plan's batch shares, a pipeline's cuts or "
      "a branch plan's node lists; this plan has tensor-parallel groups: run it in one process to "
      "rebalance it, or without --rebalance");
  slowdowns_ = plan.source.device_slowdowns;
  if (channel_->plans()) {
    base_ = make_planning_inputs(model.ir, plan.source);
    mark_batch_splittability(base_, model);
    base_.options.optimizer = plan.optimizer;  // before profiling: its update step is timed
    base_.options.loss = plan.loss;
    if (plan.source.cost == "profiled") {
      ProfiledCostOptions costs;
      costs.mode = plan.mode;
      apply_profiled_costs(base_, model, costs);
    }
    base_.options.mode = plan.mode;
    base_.options.global_batch = plan.global_batch;
    base_.options.microbatches = plan.microbatches;
    base_.options.strategy = plan.strategy;
    base_.options.processes =
        plan.processes;  // new plans are predicted for the processes the current one was
    base_.options.every_device = options.keep_devices;
    if (plan.source.memory_limit) base_.options.memory_limit = plan.source.memory_limit;
  }
  channel_->planner_ready();
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

void Rebalancer::skip_step() {
  std::lock_guard<std::mutex> lock(mutex_);
  busy_s_.clear();
}

std::optional<Plan> Rebalancer::after_step(int step) {
  std::vector<double> mine;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& d : devices_) mine.push_back(busy_s_[d]);
    busy_s_.clear();
  }
  const std::vector<double> all = channel_->combine(std::move(mine), step);
  PARTITA_ASSERT(all.size() == devices_.size(), "every device's busy time");
  std::vector<Seconds> busy;
  for (double b : all) busy.emplace_back(b);
  const std::optional<DriftReport> report = monitor_->observe(busy);
  if (!report) return std::nullopt;

  Decision decision;
  if (channel_->plans()) decision = decide(step, *report);
  if (channel_->several_processes()) {  // every process switches to the very plan rank 0 sent
    Json message = {{"event", rebalance_event_to_json(decision.event)}};
    if (decision.next) message["plan"] = plan_to_json(*decision.next);
    const Json got = Json::parse(channel_->share(message.dump(), step));
    decision.event = rebalance_event_from_json(got.at("event"));
    decision.next.reset();
    if (got.contains("plan")) decision.next = plan_from_json(got["plan"]);
  }
  events_.push_back(decision.event);
  if (!decision.next) {
    watch(plan_);
    return std::nullopt;
  }
  plan_ = *decision.next;
  watch(plan_);
  return decision.next;
}

Rebalancer::Decision Rebalancer::decide(int step, const DriftReport& report) {
  // Cumulative slowdowns, the least slowed device at 1.
  for (size_t i = 0; i < devices_.size(); ++i) {
    auto it = slowdowns_.find(devices_[i]);
    const double before = it == slowdowns_.end() ? 1.0 : it->second;
    slowdowns_[devices_[i]] = before * report.slowdown[i];
  }
  double least = std::numeric_limits<double>::infinity();
  for (const auto& [device, factor] : slowdowns_) least = std::min(least, factor);
  for (auto& [device, factor] : slowdowns_) factor /= least;
  for (auto it = slowdowns_.begin(); it != slowdowns_.end();) {
    it = std::abs(it->second - 1.0) < 1e-9 ? slowdowns_.erase(it) : std::next(it);
  }

  Decision out;
  RebalanceEvent& event = out.event;
  event.step = step;
  event.drift = report.summary;
  event.from = stage_layout(plan_);
  event.to = event.from;
  plan_.source.device_slowdowns = slowdowns_;
  const PlanningInputs in = stretched();
  const Plan current = evaluate(plan_, in.graph, in.cluster, in.table, in.options);
  event.predicted_current_ms = to_milliseconds(current.prediction.step_time);
  const PlanOutcome outcome = make_plan(in.graph, in.cluster, in.table, in.options);
  if (!outcome.plan) {
    log_warning(fmt::format("rebalance: {}; no new plan: {}", report.summary, outcome.error));
    return out;
  }
  // The engine runs the new plan between steps: the best one it can run (a hybrid of tensor-parallel groups,
  // say, cannot run yet) and, across processes, one that keeps each process on its device.
  std::optional<Plan> next;
  for (const Plan& candidate : outcome.candidates) {
    if (engine_refusal(candidate, in.graph)) continue;
    next = options_.keep_devices ? on_the_same_devices(candidate, plan_) : candidate;
    if (next) break;
  }
  // A pipeline across processes: the current cuts moved by simulation, under the stretched costs, may beat
  // every candidate on the same devices (the planner's candidates are few per device order).
  if (options_.keep_devices && plan_.stages.size() > 1 && refinable(current)) {
    const Plan moved = refine_cuts(current, in.graph, in.cluster, in.table, in.options,
                                   process_cuts(in.graph), kRebalanceCutSimulations)
                           .plan;
    if (!next || moved.prediction.step_time < next->prediction.step_time) next = moved;
  }
  if (!next) {
    log_warning(fmt::format(
        "rebalance: {}; no new plan {}: {}", report.summary,
        options_.keep_devices ? "with every stage on the devices of a process" : "the engine can run",
        engine_refusal(*outcome.plan, in.graph).value_or("")));
    return out;
  }
  next->source = in.source;
  event.to = stage_layout(*next);
  event.predicted_new_ms = to_milliseconds(next->prediction.step_time);
  event.applied = !same_layout(*next, plan_) &&
                  event.predicted_new_ms < (1.0 - options_.min_gain) * event.predicted_current_ms;
  log_info(fmt::format("rebalance after step {}: {}; {} -> {} (predicted {:.2f} -> {:.2f} ms){}", step + 1,
                       report.summary, event.from, event.to, event.predicted_current_ms,
                       event.predicted_new_ms, event.applied ? "" : "; kept the current plan"));
  if (event.applied) out.next = std::move(next);
  return out;
}

}  // namespace partita::app

#pragma once
// One self-contained HTML page for a plan that was planned, not run (`partita plan --html`, `partita
// simulate --html`): what the planner predicts for one step (time, throughput, energy), each device's busy
// time, utilization and peak memory against its capacity, each machine's host memory, a picture of the plan
// (a row per device, a bar per stage over the node order), the simulated step as timelines (devices, then
// links) and the alternatives the planner ranked. Everything on it is a prediction of partita's cost models;
// the page says so. Pure: no I/O. Throws partita::Error when the plan lacks a field the page needs.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "partita/core/json_io.h"

namespace partita {

// A candidate the planner ranked (plan's `explain` table).
struct PlanAlternative {
  std::string strategy;
  std::string layout;  // e.g. "2 stage(s), 4 mb, cpu:0,cpu:1"
  double step_ms = 0;
  double samples_per_second = 0;
  int64_t peak_bytes = 0;  // the largest device's
  double joules = 0;       // per step
  bool pareto = false;     // no other candidate is both faster and greener
};

struct PlanReportInputs {
  std::string title;                          // what was planned, e.g. the model file and the cluster
  Json plan;                                  // plan_json.h's JSON, with its prediction
  Json trace;                                 // the simulated step (search/simulator.h chrome_trace)
  std::map<std::string, int64_t> capacities;  // device id -> memory in bytes (absent: unknown)
  std::vector<PlanAlternative> alternatives;  // best first; the chosen plan is the first (may be empty)
  std::vector<std::string> warnings;          // e.g. "does not fit in memory: ..."
};

std::string plan_report_html(const PlanReportInputs& in);

}  // namespace partita

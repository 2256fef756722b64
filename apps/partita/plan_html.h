#pragma once
// `partita plan --html` and `partita simulate --html`: the plan report page (viz/plan_report.h) for a plan on
// the graph, cluster and costs it was made for.
#include <string>
#include <vector>

#include "partita/search/plan.h"
#include "partita/viz/plan_report.h"
#include "planning_inputs.h"

namespace partita::app {

// Simulates `plan` once more for its timeline and writes the page to `path` (a capacity per device: its
// memory, or the --memory-limit when smaller). Throws partita::Error when the file cannot be written.
void write_plan_html(const std::string& path, const Plan& plan, const PlanningInputs& in,
                     const SearchOptions& options, const std::vector<PlanAlternative>& alternatives);

}  // namespace partita::app

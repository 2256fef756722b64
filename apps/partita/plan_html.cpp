#include "plan_html.h"

#include <algorithm>
#include <fstream>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/core/log.h"
#include "partita/search/plan_json.h"
#include "partita/search/simulator.h"

namespace partita::app {

void write_plan_html(const std::string& path, const Plan& plan, const PlanningInputs& in,
                     const SearchOptions& options, const std::vector<PlanAlternative>& alternatives) {
  const Simulation sim = simulate(plan, in.graph, in.cluster, in.table, options);
  PlanReportInputs report;
  const PlanSource& src = plan.source.empty() ? in.source : plan.source;
  report.title =
      fmt::format("{} on {}", src.model.empty() ? src.model_spec : src.model,
                  src.cluster.empty() ? (src.devices.empty() ? "this machine" : src.devices) : src.cluster);
  Plan simulated = plan;
  simulated.prediction = sim.prediction;
  report.plan = plan_to_json(simulated);
  report.trace = chrome_trace(sim);
  for (const auto& d : in.cluster.devices) {
    Bytes cap = d.spec.memory;
    if (options.memory_limit && (cap.value() <= 0 || *options.memory_limit < cap))
      cap = *options.memory_limit;
    if (cap.value() > 0) report.capacities[d.id] = cap.value();
  }
  report.alternatives = alternatives;
  if (!sim.fits_memory) report.warnings.push_back("does not fit in memory: " + sim.memory_note);
  if (!sim.fits_host_memory)
    report.warnings.push_back("does not fit in host memory: " + sim.host_memory_note);
  for (const auto& u : plan.unused_devices)
    report.warnings.push_back(fmt::format("{} is not used: {}", u.device, u.reason));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << plan_report_html(report);
  out.flush();
  PARTITA_CHECK(out.good(), "cannot write ", path, "; check the directory exists and is writable");
  log_info("wrote " + path);
}

}  // namespace partita::app

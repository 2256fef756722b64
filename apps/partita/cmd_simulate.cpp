// partita simulate: replay a plan file through the discrete-event simulator on the graph, cluster and cost
// table rebuilt from the plan's "source" section; print the prediction, write it as JSON and as a Chrome
// trace.
#include <cstdio>

#include <fmt/format.h>

#include "commands.h"
#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/core/json_io.h"
#include "partita/core/log.h"
#include "partita/search/plan_json.h"
#include "partita/search/simulator.h"
#include "plan_html.h"
#include "planning_inputs.h"

namespace partita::app {

namespace {

struct SimulateArgs {
  std::string plan;
  std::string trace;
  std::string json;
  std::string html;
};

void run_simulate(const SimulateArgs& args) {
  check_output_path(args.json, "--json");
  check_output_path(args.trace, "--trace");
  check_output_path(args.html, "--html");
  const Plan stored = plan_from_json(read_json_file(args.plan));
  PARTITA_CHECK(!stored.source.empty(), "plan file '", args.plan,
                "' has no 'source' section naming its model and devices; make it with `partita plan --json`");
  PlanningInputs in = load_planning_inputs(stored.source, stored.mode, stored.optimizer);
  SearchOptions options = in.options;
  log_info(fmt::format("simulate: {} stage(s), {} microbatch(es) on {} device(s)", stored.stages.size(),
                       stored.microbatches, stored.used_devices().size()));
  const Simulation sim = simulate(stored, in.graph, in.cluster, in.table, options);
  Plan evaluated = stored;
  evaluated.prediction = sim.prediction;
  std::FILE* text = args.json == "-" ? stderr : stdout;
  fmt::print(text, "simulated {} ({} tasks on {} resources, cost model {}):\n", args.plan, sim.tasks.size(),
             sim.resources.size(), in.source.cost);
  fmt::print(text, "  step {}, {:.4g} samples/s, {:.4g} J/step (the plan file said {})\n",
             format_seconds(sim.step_time), sim.prediction.samples_per_second, sim.prediction.energy.value(),
             format_seconds(stored.prediction.step_time));
  for (const auto& d : sim.prediction.devices) {
    const double util = sim.step_time.value() > 0 ? 100.0 * d.busy.value() / sim.step_time.value() : 0.0;
    fmt::print(text, "    {}: busy {} ({:.0f}%), peak {}, {:.4g} J\n", d.device, format_seconds(d.busy), util,
               format_bytes(d.peak_memory), d.energy.value());
  }
  for (const auto& h : sim.prediction.hosts) {
    fmt::print(
        text, "    host memory of {}: {}{} (weights and state {}){}\n", h.node, format_bytes(h.peak_memory),
        h.capacity.value() > 0 ? " of " + format_bytes(h.capacity) : std::string(),
        format_bytes(h.model_state),
        h.processes.empty() ? std::string()
                            : fmt::format(" in {} processes: {}", h.processes.size(), process_peaks_text(h)));
  }
  if (!sim.fits_memory) fmt::print(text, "  warning: does not fit in memory: {}\n", sim.memory_note);
  if (!sim.fits_host_memory)
    fmt::print(text, "  warning: does not fit in host memory: {}\n", sim.host_memory_note);
  if (!args.trace.empty()) write_json_file(args.trace, chrome_trace(sim));
  if (!args.json.empty()) write_json_file(args.json, plan_to_json(evaluated));
  if (!args.html.empty()) write_plan_html(args.html, stored, in, options, {});
}

}  // namespace

Command register_simulate(CLI::App& app) {
  auto args = std::make_shared<SimulateArgs>();
  CLI::App* cmd =
      app.add_subcommand("simulate", "predict a plan's step time, memory and energy (and draw its timeline)");
  cmd->add_option("plan", args->plan, "plan JSON written by partita plan --json")->required();
  cmd->add_option("--trace", args->trace, "write the simulated timeline as Chrome trace JSON (Perfetto)");
  cmd->add_option("--json", args->json,
                  "write the plan with the simulated prediction as JSON (- for stdout)");
  cmd->add_option("--html", args->html,
                  "write a report page: prediction, devices, a picture of the plan, the simulated step");
  return Command{cmd, [args] { run_simulate(*args); }};
}

}  // namespace partita::app

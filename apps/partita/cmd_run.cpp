// partita run: execute a plan on this machine's devices and report step time, losses and utilization.
#include <fmt/format.h>

#include "commands.h"
#include "partita/core/error.h"
#include "partita/core/log.h"
#include "partita/search/plan_json.h"
#include "plan_runner.h"

namespace partita::app {

namespace {

struct RunArgs {
  ModelArgs model;
  std::string plan;
  int steps = 10;
  bool train = false;
  double lr = 0.01;
  std::string loss = "auto";
  std::string trace;
  std::string json;
};

void run_run(const RunArgs& args) {
  const auto specs = args.model.specs();
  const Plan plan = plan_from_json(read_json_file(args.plan));
  const bool plan_trains = plan.mode == Mode::kTraining;
  PARTITA_CHECK(plan_trains == args.train, "plan '", args.plan, "' is for ", mode_name(plan.mode), " but --train was ",
                args.train ? "given" : "not given", "; plan with", args.train ? "" : "out", " --train or run with",
                plan_trains ? "" : "out", " --train");
  LoadedModel model = load_model(args.model.model);
  annotate_shapes(model, specs);
  RunOptions options;
  options.steps = args.steps;
  options.learning_rate = args.lr;
  options.loss = parse_loss_kind(args.loss);
  options.record_trace = !args.trace.empty();
  log_info(fmt::format("run: {} on {} device(s), {} step(s)", args.model.model, plan.used_devices().size(), args.steps));
  const RunReport report = run_plan(model, plan, specs, options);

  std::FILE* out = args.json == "-" ? stderr : stdout;
  fmt::print(out, "step time {:.2f} ms median of {} (spread {:.2f} ms), {:.1f} samples/s; predicted {:.2f} ms\n",
             report.median_ms, report.step_ms.size(), report.spread_ms, report.samples_per_second,
             to_milliseconds(plan.prediction.step_time));
  for (const auto& w : report.workers) {
    fmt::print(out, "  stage {} on {:<8} busy {:8.2f} ms/step (predicted {:8.2f}), utilization {:5.1f}%\n", w.stage,
               w.device, w.busy_ms_per_step, w.predicted_busy_ms, 100.0 * w.utilization);
  }
  if (!report.losses.empty()) {
    fmt::print(out, "  loss {:.5f} -> {:.5f}\n", report.losses.front(), report.losses.back());
  }
  if (!args.trace.empty()) write_json_file(args.trace, report.trace);
  if (!args.json.empty()) {
    Json j = run_report_to_json(report);
    j["predicted_ms"] = to_milliseconds(plan.prediction.step_time);
    write_json_file(args.json, j);
  }
}

}  // namespace

Command register_run(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "execute a plan (from partita plan --json) on this machine");
  add_model_args(*cmd, args->model);
  cmd->add_option("--plan", args->plan, "plan JSON from partita plan")->required()->check(CLI::ExistingFile);
  cmd->add_option("--steps", args->steps, "steps to time (after 2 warm-up steps)")->check(CLI::PositiveNumber);
  cmd->add_flag("--train", args->train, "training steps (the plan must be a training plan)");
  cmd->add_option("--lr", args->lr, "learning rate");
  cmd->add_option("--loss", args->loss, "auto, cross_entropy, mse or next_token");
  cmd->add_option("--trace", args->trace, "write a Chrome trace of the run (open in Perfetto)");
  cmd->add_option("--json", args->json, "write results as JSON (- for stdout)");
  return Command{cmd, [args] { run_run(*args); }, /*default_threads=*/1};
}

}  // namespace partita::app

// partita run: execute a plan on this machine's devices and report step time, losses and utilization.
// Under torchrun's environment (WORLD_SIZE > 1: `partita launch` or `torchrun --no_python`), this process is
// one rank of a multi-process data-parallel job: the plan must be one data-parallel stage with WORLD_SIZE
// devices; rank r runs device r on its share of the same global batch and gradients are all-reduced over
// Gloo. Only rank 0 prints the table and writes --json/--trace (its own worker's metrics; the losses are
// global).
#include <cstdio>
#include <memory>

#include <unistd.h>

#include <fmt/format.h>

#include "commands.h"
#include "partita/core/error.h"
#include "partita/core/log.h"
#include "partita/runtime/distributed_env.h"
#include "partita/runtime/distributed_reducer.h"
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

void check_distributed_plan(const Plan& plan, const DistributedEnv& env) {
  const size_t devices = plan.stages.empty() ? 0 : plan.groups.at(plan.stages[0].group).devices.size();
  PARTITA_CHECK(plan.stages.size() == 1 && devices == static_cast<size_t>(env.world_size) &&
                    plan.groups[plan.stages[0].group].parallelism == GroupParallelism::kData,
                "a ", env.world_size, "-process run needs a one-stage data-parallel plan with ",
                env.world_size, " devices, got ", plan.stages.size(), " stage(s) with ", devices,
                " device(s) in the first; plan with --strategy data --devices LIST of ", env.world_size,
                " devices");
}

// A failed rank tells the others (through the store) and leaves at once: unwinding would destroy a process
// group whose peers may be gone, which can block.
[[noreturn]] void exit_failed_rank(DistributedGroup& group, const std::exception& e) {
  std::string message = first_line(e);
  if (message.rfind("rank ", 0) != 0) message = "rank " + std::to_string(group.rank()) + ": " + message;
  group.report_failure(message);
  std::fflush(stdout);
  std::fprintf(stderr, "partita: error: %s\n", message.c_str());
  std::fflush(stderr);
  _exit(1);
}

void run_run(const RunArgs& args) {
  const auto specs = args.model.specs();
  const Plan plan = plan_from_json(read_json_file(args.plan));
  const bool plan_trains = plan.mode == Mode::kTraining;
  PARTITA_CHECK(plan_trains == args.train, "plan '", args.plan, "' is for ", mode_name(plan.mode),
                " but --train was ", args.train ? "given" : "not given", "; plan with",
                args.train ? "" : "out", " --train or run with", plan_trains ? "" : "out", " --train");
  const std::optional<DistributedEnv> dist = distributed_env_from_environment();
  if (dist) check_distributed_plan(plan, *dist);
  LoadedModel model = load_model(args.model.model);
  annotate_shapes(model, specs);
  RunOptions options;
  options.steps = args.steps;
  options.learning_rate = args.lr;
  options.loss = parse_loss_kind(args.loss);
  options.record_trace = !args.trace.empty();
  log_info(fmt::format("run: {} on {} device(s), {} step(s)", args.model.model, plan.used_devices().size(),
                       args.steps));
  std::unique_ptr<DistributedGroup> group;
  std::unique_ptr<GlooGradientReducer> reducer;
  if (dist) {
    group = std::make_unique<DistributedGroup>(*dist);
    reducer = std::make_unique<GlooGradientReducer>(*group);
    options.local_replica = dist->rank;
    options.reducer = reducer.get();
  }
  RunReport report;
  try {
    report = run_plan(model, plan, specs, options);
    if (group) group->barrier("the end-of-run barrier");
  } catch (const std::exception& e) {
    if (!group) throw;
    exit_failed_rank(*group, e);
  }
  if (dist && dist->rank != 0) return;  // rank 0 reports for the job

  std::FILE* out = args.json == "-" ? stderr : stdout;
  fmt::print(out,
             "step time {:.2f} ms median of {} (spread {:.2f} ms), {:.1f} samples/s; predicted {:.2f} ms\n",
             report.median_ms, report.step_ms.size(), report.spread_ms, report.samples_per_second,
             to_milliseconds(plan.prediction.step_time));
  for (const auto& w : report.workers) {
    fmt::print(out, "  stage {} on {:<8} busy {:8.2f} ms/step (predicted {:8.2f}), utilization {:5.1f}%\n",
               w.stage, w.device, w.busy_ms_per_step, w.predicted_busy_ms, 100.0 * w.utilization);
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
  cmd->add_option("--steps", args->steps, "steps to time (after 2 warm-up steps)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--train", args->train, "training steps (the plan must be a training plan)");
  cmd->add_option("--lr", args->lr, "learning rate");
  cmd->add_option("--loss", args->loss, "auto, cross_entropy, mse or next_token");
  cmd->add_option("--trace", args->trace, "write a Chrome trace of the run (open in Perfetto)");
  cmd->add_option("--json", args->json, "write results as JSON (- for stdout)");
  return Command{cmd, [args] { run_run(*args); }, /*default_threads=*/1};
}

}  // namespace partita::app

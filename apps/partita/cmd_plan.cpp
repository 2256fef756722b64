// partita plan: search strategies for a model on devices of this machine or a described cluster; print the
// chosen plan, why it won (the best alternatives and the time/energy Pareto front) and write it as JSON.
#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "commands.h"
#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/core/json_io.h"
#include "partita/core/log.h"
#include "partita/runtime/engine.h"
#include "partita/search/device_slowdown.h"
#include "partita/search/plan_json.h"
#include "partita/search/planner.h"
#include "partita/search/power_cap_search.h"
#include "partita/search/simulator.h"
#include "plan_html.h"
#include "planning_inputs.h"

namespace partita::app {

namespace {

// How many ranked alternatives the explanation lists.
constexpr size_t kAlternativesShown = 6;

struct PlanArgs {
  std::string model;
  std::vector<std::string> inputs;
  std::string model_spec;
  int batch = 0;
  std::string devices;
  std::string cluster;
  std::string objective = "time";
  std::string strategy = "auto";
  bool train = false;
  std::string optimizer;  // empty: adam
  std::string loss;       // empty: auto
  std::string memory_limit;
  std::string cost;
  int microbatches = 0;
  std::vector<std::string> slowdowns;
  std::vector<std::string> power_caps;
  bool all_devices = false;
  std::string processes = "one";
  bool no_cut_refinement = false;
  std::string json;
  std::string html;
};

Bytes peak_of(const Plan& p) {
  Bytes peak(0);
  for (const auto& d : p.prediction.devices) peak = std::max(peak, d.peak_memory);
  return peak;
}

// "pipeline 3 stages x 4 mb on cuda:0,cuda:1,..." in one short cell.
std::string layout_of(const Plan& p) {
  std::string devices;
  for (const auto& d : p.used_devices()) devices += (devices.empty() ? "" : ",") + d;
  if (devices.size() > 40) devices = devices.substr(0, 37) + "...";
  int tensor = 1;
  for (const auto& g : p.groups) tensor = std::max(tensor, g.tensor_degree());
  return fmt::format("{} stage(s), {} mb, {}{}", p.stages.size(), p.microbatches,
                     tensor > 1 ? fmt::format("tensor {}, ", tensor) : "", devices);
}

std::string explain(const PlanOutcome& out) {
  std::string text =
      fmt::format("why it won ({} feasible candidates, ranked by the objective):\n", out.candidates.size());
  text += fmt::format("  {:>2}  {:<9} {:>11} {:>12} {:>11} {:>11}  {}\n", "#", "strategy", "step",
                      "samples/s", "peak mem", "J/step", "layout");
  for (size_t i = 0; i < out.candidates.size() && i < kAlternativesShown; ++i) {
    const Plan& p = out.candidates[i];
    const bool front = std::find(out.pareto.begin(), out.pareto.end(), i) != out.pareto.end();
    text += fmt::format("  {:>2}  {:<9} {:>11} {:>12.4g} {:>11} {:>11.4g}  {}{}\n", i + 1,
                        strategy_name(p.strategy), format_seconds(p.prediction.step_time),
                        p.prediction.samples_per_second, format_bytes(peak_of(p)),
                        p.prediction.energy.value(), layout_of(p), front ? "  [pareto]" : "");
  }
  text += "  pareto front (no other candidate is both faster and greener):";
  for (size_t i : out.pareto) {
    const Plan& p = out.candidates[i];
    text += fmt::format(" #{} {} {} {:.4g} J;", i + 1, strategy_name(p.strategy),
                        format_seconds(p.prediction.step_time), p.prediction.energy.value());
  }
  text.back() = '\n';
  return text;
}

// What --power-cap auto tried and chose, for people.
std::string describe_cap_choice(const CappedPlanOutcome& capped) {
  const CapSetting& uncapped = capped.settings.front();
  const Plan& plan = *capped.outcome.plan;
  std::string caps;
  for (const auto& [device, watts] : capped.caps_w)
    caps += fmt::format("{}{} {:.0f} W", caps.empty() ? "" : ", ", device, watts);
  std::string out = fmt::format("power caps (cube-law model, not measured; {} setting(s) planned): {}\n",
                                capped.settings.size(), caps.empty() ? "none (uncapped is best)" : caps);
  if (uncapped.feasible && !caps.empty()) {
    out += fmt::format(
        "  uncapped {:.2f} ms, {:.4g} J/step; capped {:.2f} ms ({:+.1f}%), {:.4g} J/step ({:+.1f}%)\n",
        to_milliseconds(uncapped.step_time), uncapped.energy.value(),
        to_milliseconds(plan.prediction.step_time),
        100 * (plan.prediction.step_time / uncapped.step_time - 1), plan.prediction.energy.value(),
        100 * (plan.prediction.energy / uncapped.energy - 1));
  }
  return out;
}

void run_plan(const PlanArgs& args) {
  check_output_path(args.json, "--json");
  check_output_path(args.html, "--html");
  PlanSource source;
  source.model = args.model;
  source.inputs = args.inputs;
  source.model_spec = args.model_spec;
  source.devices = args.devices;
  source.cluster = args.cluster;
  source.cost = args.cost;
  PARTITA_CHECK(!(args.model.empty() && args.model_spec.empty()),
                "nothing to plan: give MODEL.pt --input SPEC... or --model-spec FILE.yaml");
  if (!args.model_spec.empty()) source.batch = args.batch > 0 ? args.batch : 8;
  if (!args.memory_limit.empty()) source.memory_limit = parse_memory_limit(args.memory_limit);
  for (const auto& text : args.slowdowns) {
    const auto [device, factor] = parse_device_slowdown(text);
    source.device_slowdowns[device] = factor;
  }
  const bool auto_caps =
      std::find(args.power_caps.begin(), args.power_caps.end(), "auto") != args.power_caps.end();
  PARTITA_CHECK(!auto_caps || args.power_caps.size() == 1,
                "--power-cap auto chooses every GPU's cap; do not give it with DEVICE:WATTS caps");
  for (const auto& text : args.power_caps) {
    if (auto_caps) break;
    const auto [device, watts] = parse_device_power_cap(text);
    source.power_caps[device] = watts;
  }
  // Parse the choices before the (slow) model load so typos fail fast.
  const Objective objective = parse_objective(args.objective);
  PARTITA_CHECK(!auto_caps || objective != Objective::kTime,
                "--power-cap auto chooses caps for --objective energy or balanced; under time (the "
                "default) no cap makes a step faster");
  const StrategyKind strategy = parse_strategy(args.strategy);
  const ProcessLayout processes = parse_process_layout(args.processes);
  PARTITA_CHECK(args.optimizer.empty() || args.train, "--optimizer ", args.optimizer,
                ": an optimizer is for training; add --train or leave --optimizer out");
  const Optimizer optimizer = args.optimizer.empty() ? Optimizer::kAdam : parse_optimizer(args.optimizer);
  PlanningInputs in =
      load_planning_inputs(source, args.train ? Mode::kTraining : Mode::kInference, optimizer);
  PARTITA_CHECK(args.loss.empty() || args.train, "--loss ", args.loss,
                ": a loss is for training; add --train or leave --loss out");
  SearchOptions options = in.options;
  options.mode = args.train ? Mode::kTraining : Mode::kInference;
  if (!args.loss.empty()) options.loss = parse_loss_kind(args.loss);
  options.objective = objective;
  options.strategy = strategy;
  if (args.batch > 0) options.global_batch = args.batch;
  options.microbatches = args.microbatches;
  options.every_device = args.all_devices;
  options.processes = processes;
  options.refine_cuts = !args.no_cut_refinement;
  if (!options.batch_splittable) {
    const std::string why = fmt::format("{} computes something else on part of its batch ({})", args.model,
                                        in.batch_split_problem);
    PARTITA_CHECK(options.microbatches <= 1, "--microbatches ", options.microbatches, ": ", why,
                  "; plan with one microbatch");
    PARTITA_CHECK(options.global_batch == in.options.global_batch, "--batch ", options.global_batch, ": ",
                  why, "; plan at the traced batch ", in.options.global_batch);
  }
  options.validate();
  log_info(fmt::format("plan: searching {} strategies for {} nodes on {} device(s) ({})", args.strategy,
                       in.graph.num_nodes(), in.cluster.devices.size(), in.cluster.name));
  PlanOutcome out;
  if (auto_caps) {
    CappedPlanOutcome capped = plan_with_power_caps(in.graph, in.cluster, in.table, options);
    out = std::move(capped.outcome);
    PARTITA_CHECK(out.plan.has_value(), out.error);
    in.cluster = std::move(capped.cluster);
    in.table = std::move(capped.table);
    in.source.power_caps = capped.caps_w;
    fmt::print(args.json == "-" ? stderr : stdout, "{}", describe_cap_choice(capped));
  } else {
    out = make_plan(in.graph, in.cluster, in.table, options);
  }
  PARTITA_CHECK(out.plan.has_value(), out.error);
  // A plan for this machine's devices is made to be run: when the best-predicted layout is one partita run
  // cannot run yet (engine_refusal: tensor parallelism inside a hybrid's stages, or over a graph whose ops
  // it cannot split), take the best it can
  // run and say so. Asked for by --strategy tensor, or for a described cluster, the plan stays the
  // prediction's best, with a note.
  std::string runnable_note;
  if (const auto refusal = engine_refusal(*out.plan, in.graph)) {
    const bool here = in.source.cluster.empty() && !in.source.model.empty();
    const auto runnable = std::find_if(out.candidates.begin(), out.candidates.end(), [&](const Plan& p) {
      return !engine_refusal(p, in.graph).has_value();
    });
    if (here && strategy != StrategyKind::kTensor && runnable != out.candidates.end()) {
      runnable_note = fmt::format(
          "note: chose #{}, the best plan partita run can run here; #1 ({}, {}) is predicted faster but {}\n",
          runnable - out.candidates.begin() + 1, strategy_name(out.plan->strategy),
          format_seconds(out.plan->prediction.step_time), *refusal);
      out.plan = *runnable;
    } else {
      runnable_note = "note: partita run cannot run this plan yet: " + *refusal + "\n";
    }
  }
  Plan plan = *out.plan;
  plan.source = in.source;
  std::FILE* text = args.json == "-" ? stderr : stdout;  // keep stdout parseable with --json -
  fmt::print(text, "{}", plan.to_string());
  // A launched plan: what its processes' messages cost, against the same plan in one process.
  std::optional<Seconds> one_process;
  if (plan.processes == ProcessLayout::kLaunch) {
    Plan alone = plan;
    alone.processes = ProcessLayout::kOne;
    one_process = simulate(alone, in.graph, in.cluster, in.table, options).step_time;
    const auto describe = [](const LinkSpec& l) {
      return fmt::format("\"{}\" (latency {:.1f} us, {:.2f} GB/s; {})", l.name, l.latency.value() * 1e6,
                         l.bandwidth.value() / 1e9, l.source);
    };
    fmt::print(text,
               "processes: as `partita launch -n {}` runs it; messages between its processes cross {}, "
               "collectives {}; the same plan in one process: {}\n",
               plan.stages.size() > 1 ? plan.stages.size() : plan.used_devices().size(),
               describe(options.process_links->message), describe(options.process_links->collective),
               format_seconds(*one_process));
  }
  fmt::print(text, "{}", explain(out));
  fmt::print(text, "{}", runnable_note);
  if (!options.batch_splittable) {
    fmt::print(text,
               "note: every plan keeps the batch whole (no microbatches, no data parallelism): {} computes "
               "something else on part of it ({})\n",
               args.model, in.batch_split_problem);
  }
  if (!args.json.empty()) {
    Json j = plan_to_json(plan);
    // A convenience figure for scripts, like predicted_step_ms (not read back).
    if (one_process) j["predicted_step_ms_one_process"] = to_milliseconds(*one_process);
    write_json_file(args.json, j);
  }
  if (!args.html.empty()) {
    std::vector<PlanAlternative> alternatives;
    for (size_t i = 0; i < out.candidates.size() && i < kAlternativesShown; ++i) {
      const Plan& p = out.candidates[i];
      alternatives.push_back(
          PlanAlternative{.strategy = std::string(strategy_name(p.strategy)),
                          .layout = layout_of(p),
                          .step_ms = to_milliseconds(p.prediction.step_time),
                          .samples_per_second = p.prediction.samples_per_second,
                          .peak_bytes = peak_of(p).value(),
                          .joules = p.prediction.energy.value(),
                          .pareto = std::find(out.pareto.begin(), out.pareto.end(), i) != out.pareto.end()});
    }
    write_plan_html(args.html, plan, in, options, alternatives);
  }
}

}  // namespace

Command register_plan(CLI::App& app) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* cmd =
      app.add_subcommand("plan", "search data/pipeline/hybrid/branch/tensor plans and pick the best");
  cmd->add_option("model", args->model, "TorchScript file (or use --model-spec)");
  cmd->add_option("--input", args->inputs,
                  "input spec DIMxDIM...[:DTYPE[:HIGH]][:shared], one per forward() argument");
  cmd->add_option("--model-spec", args->model_spec,
                  "model spec YAML (config/models/*.yaml), planned without weights");
  cmd->add_option("--batch", args->batch,
                  "samples per step (default: the --input batch; 8 with --model-spec)")
      ->check(positive_integer());
  auto* devices =
      cmd->add_option("--devices", args->devices,
                      "devices of this machine, e.g. cpu:0,cpu:1 or cpu (default: every core as a "
                      "one-core group, plus GPUs)");
  cmd->add_option("--cluster", args->cluster,
                  "cluster YAML describing other hardware (config/clusters/*.yaml)")
      ->excludes(devices);
  cmd->add_option("--objective", args->objective, "time, energy or balanced");
  cmd->add_option("--strategy", args->strategy, "auto, data, pipeline, hybrid, branch, tensor or even");
  cmd->add_flag("--train", args->train, "plan a training step (default: inference)");
  cmd->add_option("--optimizer", args->optimizer,
                  "training: sgd, sgd_momentum, adam (default) or adamw; its state counts in memory and "
                  "partita run trains with it");
  cmd->add_option(
      "--loss", args->loss,
      "training: auto (default), cross_entropy, mse or next_token; its targets count in memory and "
      "partita run trains with it");
  cmd->add_option("--memory-limit", args->memory_limit, "per-device memory cap, bytes or like 4GiB");
  cmd->add_option(
      "--cost", args->cost,
      "roofline (device specs) or profiled (per-op times measured here; the default for a TorchScript "
      "model on local devices)");
  cmd->add_option("--microbatches", args->microbatches, "use exactly this many microbatches per step")
      ->check(positive_integer());
  cmd->add_option("--device-slowdown", args->slowdowns,
                  "DEVICE:FACTOR: plan as if that device were FACTOR times slower (shared with other work); "
                  "repeatable");
  cmd->add_option("--power-cap", args->power_caps,
                  "DEVICE:WATTS: plan a GPU as if power-capped (clock from a cube-law model of power, busy "
                  "power = the cap); repeatable; or auto: choose each GPU kind's cap (0.5-1.0 of TDP) for "
                  "--objective energy or balanced; partita run --power-cap applies a cap");
  cmd->add_flag("--all-devices", args->all_devices,
                "keep only plans that use every listed device (e.g. one process per device with partita "
                "launch), even where leaving one out is predicted faster");
  cmd->add_option("--processes", args->processes,
                  "one (default: one process, a thread per device) or launch (the processes of partita "
                  "launch: one per stage, or per device of a one-stage plan; their messages are counted)");
  cmd->add_flag("--no-cut-refinement", args->no_cut_refinement,
                "keep the pipeline partitioner's cuts instead of moving them while the simulated step gets "
                "faster (to compare the two)");
  cmd->add_option("--json", args->json, "write the plan as JSON (- for stdout)");
  cmd->add_option("--html", args->html,
                  "write a report page: prediction, devices, a picture of the plan, the simulated step, "
                  "the alternatives");
  return Command{cmd, [args] { run_plan(*args); }};
}

}  // namespace partita::app

// partita optimize: the one command a user runs. Analyze the model, plan for this machine's devices, measure
// plain LibTorch at every thread setting and the planner's best candidates, then run the winner and the best
// baseline side by side and write plan, trace and metrics into an output folder.
//
// The planner proposes and measurement decides: its cost model ranks the candidates, each is run for a few
// steps, and the two best by the objective plus the candidate that mirrors plain LibTorch's best setting (the
// same threads and OpenBLAS setting, through partita's executor) run again, alternating, each round a window
// of at least 0.15 s; the best medians by the objective win (--objective time: step time; energy: energy per
// step, measured or estimated from busy time as `run` reports it; balanced: the least energy within 5% of
// the fastest). The final comparison gives every round at least 0.3 s, runs as many rounds again when their
// speedups disagree by more than 15%, and reports both jobs' energy.
// Single-device plans (the whole CPU, one core; OpenBLAS single-threaded or keeping its pool) are always
// among the candidates, so partita settles for something slower than plain LibTorch only by the executor's
// overhead or by noise. In training every measured run starts from the weights in the model file.
// With --processes launch the device set is planned for the processes of `partita launch` (one per stage, or
// per device of a one-stage plan; the messages between them counted), and each such candidate is measured as
// a job of that many processes (launched_run.h): every measurement pays a process start, the model's load and
// the warm-up steps, outside the timed steps. With --processes both the device set is planned both ways, for
// threads and for processes, --candidates of each, and measurement decides between them as between any
// candidates. The single-device floors stay in this process.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "commands.h"
#include "launched_run.h"
#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/core/json_io.h"
#include "partita/core/log.h"
#include "partita/core/own_thread.h"
#include "partita/core/statistics.h"
#include "partita/runtime/baseline.h"
#include "partita/runtime/optimizer.h"
#include "partita/search/objective.h"
#include "partita/search/plan_json.h"
#include "partita/search/planner.h"
#include "partita/search/simulator.h"
#include "partita/torch_bridge/gradient_check.h"
#include "partita/torch_bridge/memory_meter.h"
#include "partita/torch_bridge/timing.h"
#include "partita/viz/optimize_report.h"
#include "plan_runner.h"
#include "planning_inputs.h"

namespace partita::app {

namespace {

// Measurement windows (see steps_for_window): the run-off repeats kRunoffRounds rounds per finalist.
constexpr Seconds kRunoffWindow{0.15};
constexpr int kRunoffRounds = 3;
// Plain LibTorch's thread sweep: at least 3 steps and this window per setting, sized from the planner's
// prediction: 3 steps of a 0.6 ms step are 2 ms of a machine whose speed changes for seconds at a time.
constexpr Seconds kSweepWindow{0.05};
constexpr Seconds kFinalWindow{0.3};
// Plain LibTorch's round medians within this of each other: the machine held still (else optimize says so).
// Also the most the final rounds' speedups may spread before the comparison runs as many rounds again.
constexpr double kSteadyRoundRange = 0.15;
// A final speedup below this is reported as partita losing to plain LibTorch.
constexpr double kSlowerThanPlain = 0.97;

struct OptimizeArgs {
  ModelArgs model;
  bool train = false;
  std::string optimizer;  // empty: adam
  std::string loss;       // empty: auto
  std::string out = "partita-out";
  std::string json;
  std::string devices;
  int steps = 10;
  int rounds = 3;
  int candidates = 3;
  std::string objective = "time";
  std::string processes = "one";
};

struct Candidate {
  Plan plan;
  PlanningInputs* inputs = nullptr;  // what it was planned with (for simulation)
  BlasThreads blas = BlasThreads::kAuto;
  double measured_ms = 0;
  double measured_joules = NAN;  // per step (RAPL/NVML or the estimate from busy time: run_energy.h)
  std::string label;
  std::string devices;  // the device set it was planned for ("" = the default set)
  int processes = 1;    // 1: threads of this process; N >= 2: the N processes of `partita launch`
};

std::string layout_label(const Plan& p) {
  std::string devices;
  for (const auto& d : p.used_devices()) devices += (devices.empty() ? "" : "+") + d;
  std::string label = fmt::format("{} {} stage(s) x{} mb on {}", strategy_name(p.strategy), p.stages.size(),
                                  p.microbatches, devices);
  // Tensor groups split the work, data groups the batch: the same devices are another layout.
  int degree = 1;
  for (const auto& g : p.groups) degree = std::max(degree, g.tensor_degree());
  if (degree > 1) label += fmt::format(" ({}-way tensor)", degree);
  return label;
}

// Steps for a measurement window of at least `window` at `step_ms` per step, and at least `min_steps`: a
// 2 ms step measured over 5 steps is 10 ms of a shared machine's time, one scheduler hiccup decides it.
int steps_for_window(double step_ms, Seconds window, int min_steps, int max_steps = 200) {
  if (!(step_ms > 0) || !std::isfinite(step_ms)) return min_steps;
  const int wanted = static_cast<int>(std::ceil(to_milliseconds(window) / step_ms));
  return std::clamp(wanted, min_steps, std::max(min_steps, max_steps));
}

double joules_per_step(const std::vector<DeviceEnergy>& energy) {
  if (energy.empty()) return NAN;
  double total = 0;
  for (const auto& e : energy) total += e.joules_per_step;
  return total;
}

// The candidates that ran, best first by `objective` on what was measured, as the planner ranks predictions
// (search/objective.h): time; energy, then time; balanced: the least energy among those within
// kBalancedSlack of the fastest, then the rest by time.
std::vector<Candidate*> rank_measured(std::vector<Candidate>& all, Objective objective) {
  std::vector<Candidate*> ran;
  for (auto& c : all) {
    if (std::isfinite(c.measured_ms)) ran.push_back(&c);
  }
  const auto joules = [](const Candidate* c) {
    return std::isfinite(c->measured_joules) ? c->measured_joules : std::numeric_limits<double>::infinity();
  };
  const auto by_time = [](const Candidate* a, const Candidate* b) { return a->measured_ms < b->measured_ms; };
  const auto by_energy = [&](const Candidate* a, const Candidate* b) {
    return joules(a) < joules(b) || (joules(a) == joules(b) && a->measured_ms < b->measured_ms);
  };
  std::stable_sort(ran.begin(), ran.end(), by_time);
  if (objective == Objective::kEnergy) {
    std::stable_sort(ran.begin(), ran.end(), by_energy);
  } else if (objective == Objective::kBalanced && !ran.empty()) {
    const double limit = ran.front()->measured_ms * (1.0 + kBalancedSlack);
    const auto split = std::stable_partition(ran.begin(), ran.end(),
                                             [&](const Candidate* c) { return c->measured_ms <= limit; });
    std::stable_sort(ran.begin(), split, by_energy);
  }
  return ran;
}

void run_optimize(const OptimizeArgs& args) {
  // Results are written after minutes of measuring: a folder that cannot take them fails now.
  check_output_folder(args.out, "--out");
  check_output_path(args.json, "--json");
  const auto specs = args.model.specs();
  check_inputs_share_batch(specs);
  const Mode mode = args.train ? Mode::kTraining : Mode::kInference;
  const Objective objective = parse_objective(args.objective);
  // The layouts the device set is planned for: both plans the device set twice, for threads of this process
  // and for launched processes, and measurement decides between them.
  PARTITA_CHECK(args.processes == "one" || args.processes == "launch" || args.processes == "both",
                "unknown process layout '", args.processes,
                "': use one (threads of this process), launch (the processes of `partita launch`) or both "
                "(measure plans of each and keep the best)");
  const std::vector<ProcessLayout> layouts =
      args.processes == "both" ? std::vector<ProcessLayout>{ProcessLayout::kOne, ProcessLayout::kLaunch}
                               : std::vector<ProcessLayout>{parse_process_layout(args.processes)};
  const bool launches = layouts.back() == ProcessLayout::kLaunch;
  // Launched candidates run as jobs in a scratch folder (launched_run.h), made when the measuring starts; one
  // that cannot be made fails now.
  if (launches) ScratchFolder("partita-optimize");
  PARTITA_CHECK(args.optimizer.empty() || args.train, "--optimizer ", args.optimizer,
                ": an optimizer is for training; add --train or leave --optimizer out");
  const Optimizer optimizer = args.optimizer.empty() ? Optimizer::kAdam : parse_optimizer(args.optimizer);
  PARTITA_CHECK(args.loss.empty() || args.train, "--loss ", args.loss,
                ": a loss is for training; add --train or leave --loss out");
  const LossKind loss = args.loss.empty() ? LossKind::kAuto : parse_loss_kind(args.loss);
  MemoryMeter& meter = MemoryMeter::install();
  LoadedModel model = load_model(args.model.model, module_mode(mode), specs);
  annotate_shapes(model, specs);
  if (mode == Mode::kTraining) check_trainable(model, specs);
  LoadedModel baseline_model = load_model(args.model.model, module_mode(mode), specs);
  annotate_shapes(baseline_model, specs);
  // Every measured training run, plain LibTorch's and each candidate's, starts from the file's weights (both
  // models loaded it): hundreds of steps on one example batch would overfit it, and an overfit model's
  // backward on subnormal floats runs several times slower, so whichever job ran later would lose.
  // (Inference changes no weight: no copy is kept.)
  std::optional<ModelSnapshot> initial;
  if (mode == Mode::kTraining) initial.emplace(model);
  const auto from_file_weights = [&](LoadedModel& m) {
    if (initial) initial->restore(m);
  };
  log_info(fmt::format("optimize: {} ({} parameters, {} per step forward)", args.model.model,
                       format_count(static_cast<double>(model.ir.parameter_elements())),
                       format_flops(model.ir.total_flops())));

  // Plan for the device set, and for single devices as the floor: the whole CPU with OpenBLAS single-threaded
  // (the engine's automatic policy) or keeping its own pool, and one core with OpenBLAS single-threaded or
  // keeping its pool (which then uses the other cores for matmuls). Together they cover every configuration
  // of the plain LibTorch sweep (torch threads 1..cores x OpenBLAS 1 or default), so the candidates include
  // the baseline's own setting run through partita's executor.
  struct DeviceSet {
    std::string devices;
    BlasThreads blas;
    ProcessLayout processes = ProcessLayout::kOne;
    bool floor = false;  // a single-device floor: one plan, the plain step
  };
  std::vector<DeviceSet> device_sets;
  for (ProcessLayout layout : layouts) device_sets.push_back({args.devices, BlasThreads::kAuto, layout});
  if (args.devices.empty()) {
    device_sets.insert(device_sets.end(), {{"cpu", BlasThreads::kAuto, ProcessLayout::kOne, true},
                                           {"cpu", BlasThreads::kLeave, ProcessLayout::kOne, true},
                                           {"cpu:0", BlasThreads::kOne, ProcessLayout::kOne, true},
                                           {"cpu:0", BlasThreads::kLeave, ProcessLayout::kOne, true}});
  }
  std::vector<std::unique_ptr<PlanningInputs>> planning;
  std::vector<Candidate> candidates;
  std::set<std::string> seen;
  std::vector<std::string> no_fit;  // why a layout of --processes both fits no plan
  for (size_t i = 0; i < device_sets.size(); ++i) {
    const DeviceSet& set = device_sets[i];
    std::unique_ptr<PlanningInputs> inputs;
    if (i > 0 && set.devices == device_sets[i - 1].devices && set.blas == device_sets[i - 1].blas) {
      // The same devices for another process layout: the same costs, measured once.
      inputs = std::make_unique<PlanningInputs>(*planning.back());
    } else {
      PlanSource source;
      source.model = std::filesystem::absolute(args.model.model).string();
      source.inputs = args.model.inputs;
      source.devices = set.devices;
      inputs = std::make_unique<PlanningInputs>(make_planning_inputs(model.ir, source));
      if (i == 0) {
        mark_batch_splittability(*inputs, model);
      } else {
        inputs->options.batch_splittable = planning.front()->options.batch_splittable;
      }
      inputs->options.mode = mode;
      inputs->options.objective = objective;
      inputs->options.optimizer = optimizer;
      inputs->options.loss = loss;
      // Per-op times measured here, under the OpenBLAS setting the candidate will run with.
      ProfiledCostOptions costs;
      costs.mode = mode;
      costs.blas_threads = set.blas == BlasThreads::kOne ? 1 : set.blas == BlasThreads::kLeave ? -1 : 0;
      apply_profiled_costs(*inputs, model, costs);
    }
    // On one device the floor is the plain step: one stage, the whole batch at once.
    if (set.floor) inputs->options.strategy = StrategyKind::kData;
    // The device set's plans for threads of this process or for the processes of `partita launch` (a
    // one-device plan is one process).
    inputs->options.processes = set.processes;
    const PlanOutcome outcome = make_plan(inputs->graph, inputs->cluster, inputs->table, inputs->options);
    if (!outcome.plan && !set.floor) {
      // With both layouts, one that fits nothing (processes each hold a model: their sum may not fit where
      // threads do) leaves the other's candidates.
      PARTITA_CHECK(layouts.size() > 1, "no plan fits: ", outcome.error);
      log_warning(fmt::format("optimize: no plan fits as {}: {}",
                              set.processes == ProcessLayout::kLaunch ? "launched processes" : "threads",
                              outcome.error));
      no_fit.push_back(outcome.error);
    }
    const int keep = set.floor ? 1 : args.candidates;
    int kept = 0;
    for (const Plan& p : outcome.candidates) {
      if (kept == keep) break;
      // A layout the engine cannot run takes no candidate's place (it is named, and the next one measured).
      if (const auto refusal = engine_refusal(p, inputs->graph)) {
        log_info(fmt::format("optimize: skipping {} (predicted {:.2f} ms): {}", layout_label(p),
                             to_milliseconds(p.prediction.step_time), *refusal));
        continue;
      }
      std::string label = layout_label(p);
      if (set.blas != BlasThreads::kAuto) label += fmt::format(" (blas {})", blas_threads_name(set.blas));
      const int launched = p.processes == ProcessLayout::kLaunch ? launch_processes(p) : 1;
      if (launched >= 2) label += fmt::format(" ({} processes)", launched);
      // The same layout can come from two strategies (a one-stage "hybrid" is data parallel): measure it
      // once.
      if (!seen.insert(label.substr(label.find(' ') + 1)).second) continue;
      candidates.push_back(Candidate{p, inputs.get(), set.blas, 0, NAN, label, set.devices});
      if (launched >= 2) {
        candidates.back().processes = launched;
        candidates.back().plan.source = inputs->source;  // the job's `partita run` reads the plan's file
      }
      ++kept;
    }
    planning.push_back(std::move(inputs));
  }
  PARTITA_CHECK(no_fit.size() < layouts.size(), "no plan fits: ", no_fit.empty() ? "" : no_fit.front());
  PARTITA_CHECK(!candidates.empty(), "the planner produced no runnable candidate");

  // From here on a launched optimize has jobs and a scratch folder to clean up: Ctrl-C or SIGTERM stop the
  // job or in-process run under way (StopOnSignal) and end optimize with one line, removing the folder
  // (before, the signal's default action ended optimize at once and left the folder in TMPDIR).
  std::optional<ScratchFolder> scratch;
  std::optional<StopOnSignal> stop;
  if (launches) {
    scratch.emplace("partita-optimize");
    stop.emplace();
  }
  const std::atomic<bool>* stop_requested = stop ? &stop->requested() : nullptr;
  const auto stop_if_asked = [&] {
    PARTITA_CHECK(stop_requested == nullptr || !stop_requested->load(),
                  "interrupted (Ctrl-C or SIGTERM) while measuring; nothing was written");
  };

  // Plain LibTorch first: its best setting decides which candidate mirrors it (below).
  BaselineOptions base;
  base.mode = mode;
  base.optimizer = candidates.front().plan.optimizer;
  base.loss = loss;
  base.learning_rate = default_learning_rate(base.optimizer);  // the steps partita's run takes
  base.warmup = 3;  // TorchScript's profiling executor re-optimizes the module on its first calls
  base.steps =
      steps_for_window(to_milliseconds(candidates.front().plan.prediction.step_time), kSweepWindow, 3);
  const auto inputs = make_inputs(specs, 11);
  std::vector<BaselineResult> sweep;
  for (const auto& config : thread_configs()) {
    stop_if_asked();
    log_info(fmt::format("optimize: measuring plain LibTorch at {}", config.to_string()));
    from_file_weights(baseline_model);
    sweep.push_back(measure_torchscript(baseline_model, inputs, config, base));
  }
  // A short sweep on a machine whose speed drifts picks a setting that was lucky as often as one that is
  // better, and the final rounds then measure it at its usual speed (GPT 8x128 training on this VM: the
  // sweep's winner at 366 ms ran 483-564 ms in the final rounds, while another setting had taken 397 ms). So
  // plain LibTorch's two best settings get the run-off partita's finalists get: kRunoffRounds alternating
  // rounds of at least kRunoffWindow each, and the median of all their runs, the sweep's included, decides.
  Json baseline_runoff = Json::array();  // [{config, median_ms}] of the run-off, for --json
  double base_before_ms = 0;             // the chosen setting before any plan ran (run-off, else sweep)
  std::sort(sweep.begin(), sweep.end(),
            [](const auto& a, const auto& b) { return a.median_ms < b.median_ms; });
  if (sweep.size() >= 2) {
    BaselineOptions runoff = base;
    runoff.steps = steps_for_window(sweep[0].median_ms, kRunoffWindow, base.steps);
    std::vector<std::vector<double>> runs = {{sweep[0].median_ms}, {sweep[1].median_ms}};
    for (int r = 0; r < kRunoffRounds; ++r) {
      for (size_t k = 0; k < 2; ++k) {
        stop_if_asked();
        from_file_weights(baseline_model);
        runs[k].push_back(measure_torchscript(baseline_model, inputs, sweep[k].config, runoff).median_ms);
      }
    }
    const double first = median_of(runs[0]), second = median_of(runs[1]);
    baseline_runoff = {{{"config", sweep[0].config.to_string()}, {"median_ms", first}},
                       {{"config", sweep[1].config.to_string()}, {"median_ms", second}}};
    log_info(fmt::format("optimize: plain LibTorch run-off {} {:.2f} ms vs {} {:.2f} ms",
                         sweep[0].config.to_string(), first, sweep[1].config.to_string(), second));
    if (second < first) std::swap(sweep[0], sweep[1]);
    base_before_ms = std::min(first, second);
  }
  const auto best_base = sweep.begin();
  if (base_before_ms == 0) base_before_ms = best_base->median_ms;
  // The candidate that runs plain LibTorch's best setting through partita's executor: the whole CPU or one
  // core, with OpenBLAS single-threaded or keeping its pool.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const ThreadConfig& bc = best_base->config;
  const std::string mirror_devices = bc.torch_threads == cores ? "cpu" : bc.torch_threads == 1 ? "cpu:0" : "";
  const BlasThreads mirror_blas = bc.blas_threads == 1
                                      ? (bc.torch_threads > 1 ? BlasThreads::kAuto : BlasThreads::kOne)
                                      : BlasThreads::kLeave;
  Candidate* mirror = nullptr;
  for (auto& c : candidates) {
    if (!mirror_devices.empty() && c.devices == mirror_devices && c.blas == mirror_blas) mirror = &c;
  }

  // Every run of a plan measures it as `partita run` runs it, a lone worker on the calling thread, so a small
  // model's step pays no hand-off to a worker thread and back (8x32 MLP of two inputs: 20 -> 11 us a step,
  // the executor alone 9 us); and on a thread of its own that ends with the run, so the OpenMP team of a
  // multi-threaded worker does not outlive it and slow what runs next (run on this thread, an idle 2-thread
  // team took plain LibTorch's googlenet rounds from 20 to 25-29 ms, and to 51 ms under
  // OMP_WAIT_POLICY=active).
  const auto run_alone = [&](const Plan& plan, const RunOptions& options) {
    RunReport report;
    run_on_own_thread([&] { report = run_plan(model, plan, specs, options); });
    return report;
  };
  // A launched candidate runs as a job of its processes (launched_run.h).
  const auto measure_once = [&](const Candidate& c, const RunOptions& options, Bytes* launched_peak) {
    if (c.processes < 2) return run_alone(c.plan, options);
    PARTITA_ASSERT(scratch.has_value(), "a launched candidate without --processes launch");
    LaunchedRunRequest job;
    job.model = args.model.model;
    job.inputs = args.model.inputs;
    job.plan = c.plan;
    job.steps = options.steps;
    job.warmup = options.warmup;
    job.train = args.train;
    job.loss = args.loss;
    job.record_trace = options.record_trace;
    job.work_dir = scratch->path();
    // Generous: a process start and the model's load, then 100x the steps at the slower of the prediction
    // and what the candidate measured so far.
    const double step_ms = std::max(to_milliseconds(c.plan.prediction.step_time),
                                    std::isfinite(c.measured_ms) ? c.measured_ms : 0.0);
    job.timeout = Seconds(120 + 100 * (options.steps + options.warmup) * step_ms * 1e-3);
    job.stop_requested = stop_requested;
    LaunchedRun launched = run_launched(job);
    if (launched_peak != nullptr) *launched_peak = launched.host_peak_together;
    return std::move(launched.report);
  };
  // A run the signal stopped did not fail: optimize ends, saying why.
  const auto measure = [&](const Candidate& c, const RunOptions& options, Bytes* launched_peak = nullptr) {
    try {
      return measure_once(c, options, launched_peak);
    } catch (const Error&) {
      stop_if_asked();
      throw;
    }
  };
  RunOptions probe;
  probe.loss = loss;
  probe.steps = 5;
  probe.warmup = 3;  // a new engine's first steps pay for thread, OpenMP team and allocator start-up
  probe.inline_lone_worker = true;
  probe.stop_requested = stop_requested;  // an in-process run stops between steps
  for (auto& c : candidates) {
    stop_if_asked();
    log_info(fmt::format("optimize: measuring candidate {} (predicted {:.2f} ms)", c.label,
                         to_milliseconds(c.plan.prediction.step_time)));
    try {
      probe.blas = c.blas;
      from_file_weights(model);
      const RunReport r = measure(c, probe);
      c.measured_ms = r.median_ms;
      c.measured_joules = joules_per_step(r.energy);
    } catch (const Error& e) {
      stop_if_asked();
      log_warning(fmt::format("optimize: candidate {} cannot run here: {}", c.label, e.what()));
      c.measured_ms = std::numeric_limits<double>::infinity();
    }
  }
  // A 5-step probe is noisy on a shared machine: the two best candidates by the objective, and the one
  // mirroring plain LibTorch's best setting, run again, alternating, and the median of all their runs
  // decides.
  const std::vector<Candidate*> ranked = rank_measured(candidates, objective);
  PARTITA_CHECK(!ranked.empty(),
                "no candidate plan could run on this machine (the warnings above say why each "
                "failed)");
  std::vector<Candidate*> finalists(ranked.begin(), ranked.begin() + std::min<size_t>(2, ranked.size()));
  if (mirror != nullptr && std::isfinite(mirror->measured_ms) &&
      std::find(finalists.begin(), finalists.end(), mirror) == finalists.end())
    finalists.push_back(mirror);
  if (finalists.size() >= 2) {
    // Each run-off round measures a window of at least kRunoffWindow per finalist, so short steps are
    // judged on many of them; the probe's own median counts as one more round.
    std::vector<std::vector<double>> runs, joules;
    for (const Candidate* c : finalists) {
      runs.push_back({c->measured_ms});
      joules.push_back({c->measured_joules});
    }
    RunOptions runoff = probe;
    runoff.steps = steps_for_window(ranked.front()->measured_ms, kRunoffWindow, probe.steps);
    for (int r = 0; r < kRunoffRounds; ++r) {
      for (size_t k = 0; k < finalists.size(); ++k) {
        stop_if_asked();
        runoff.blas = finalists[k]->blas;
        from_file_weights(model);
        const RunReport report = measure(*finalists[k], runoff);
        runs[k].push_back(report.median_ms);
        joules[k].push_back(joules_per_step(report.energy));
      }
    }
    std::string summary;
    for (size_t k = 0; k < finalists.size(); ++k) {
      finalists[k]->measured_ms = median_of(runs[k]);
      finalists[k]->measured_joules = median_of(joules[k]);
      summary +=
          fmt::format("{}{} {:.2f} ms{}", k ? " vs " : "", finalists[k]->label, finalists[k]->measured_ms,
                      finalists[k] == mirror ? " (plain LibTorch's setting)" : "");
    }
    log_info("optimize: run-off " + summary);
  }
  Candidate* const best = rank_measured(candidates, objective).front();

  // Side by side, alternating, so drift on a shared machine hits both alike. Each round's speedup pairs two
  // windows taken seconds apart; when the rounds disagree by more than kSteadyRoundRange (a slow stretch of
  // this VM hit one job's window and not the other's: resnet18 inference once came out 0.72x on 3 rounds,
  // the plan's steps 110-315 ms, plain LibTorch's 98-621 ms), the same number of rounds runs again and all
  // of them count. The rule looks only at the disagreement, never at which job is ahead.
  std::vector<double> base_ms, plan_ms;
  std::vector<double> base_round_ms;  // plain LibTorch's median per round: how steady the machine was
  std::vector<double> plan_round_ms;
  RunReport final_report;
  // --steps is the least per round; short steps get a window of at least kFinalWindow per round.
  const int final_steps = steps_for_window(best->measured_ms, kFinalWindow, args.steps);
  base.steps = final_steps;
  RunOptions run_options;
  run_options.loss = loss;
  run_options.steps = final_steps;
  run_options.warmup = 3;
  run_options.inline_lone_worker = probe.inline_lone_worker;
  run_options.blas = best->blas;
  run_options.stop_requested = stop_requested;
  // The plan's own peak: what its run adds to the tensors alive before it (the baseline's module and inputs
  // among them), plus the plan model's weights, which were alive before and are part of it.
  Bytes measured_peak(0);
  // Plain LibTorch's energy: the CPU packages' counters where readable (its warm-up steps included), else
  // the whole CPU at its TDP for the step, an upper bound (its threads keep every core busy or spinning).
  RunEnergyMeter base_meter({"cpu"});
  std::vector<double> base_joules;
  std::vector<DeviceEnergy> base_energy;
  int total_rounds = args.rounds;
  for (int r = 0; r < total_rounds; ++r) {
    stop_if_asked();
    log_info(fmt::format("optimize: round {}/{}", r + 1, total_rounds));
    from_file_weights(baseline_model);
    base_meter.start();
    const auto b = measure_torchscript(baseline_model, inputs, best_base->config, base);
    const double b_median = median_of(b.step_ms);
    base_round_ms.push_back(b_median);
    base_energy =
        base_meter.finish(static_cast<int>(b.step_ms.size()) + base.warmup, b_median, {{"cpu", b_median}});
    base_joules.push_back(joules_per_step(base_energy));
    base_ms.insert(base_ms.end(), b.step_ms.begin(), b.step_ms.end());
    run_options.record_trace = r + 1 == total_rounds || r + 1 == args.rounds;
    from_file_weights(model);  // also drops earlier runs' gradients: this run allocates (and counts) its own
    meter.reset_peak();
    const Bytes before = meter.current_bytes();
    Bytes launched_peak(0);
    final_report = measure(*best, run_options, &launched_peak);
    measured_peak =
        std::max(measured_peak, best->processes > 1 ? launched_peak : meter.peak_bytes() - before);
    plan_ms.insert(plan_ms.end(), final_report.step_ms.begin(), final_report.step_ms.end());
    plan_round_ms.push_back(median_of(final_report.step_ms));
    if (r + 1 == args.rounds && args.rounds >= 2) {
      const RoundRatios first = round_ratios(base_round_ms, plan_round_ms);
      if (first.spread() > kSteadyRoundRange) {
        total_rounds = 2 * args.rounds;
        log_info(fmt::format("optimize: the rounds' speedups disagree ({:.2f}x to {:.2f}x): {} more rounds",
                             first.lowest, first.highest, args.rounds));
      }
    }
  }
  const RoundRatios round_speedups = round_ratios(base_round_ms, plan_round_ms);
  // A launched job's ranks counted their own models' tensors.
  if (best->processes < 2) measured_peak = measured_peak + model_tensor_bytes(model);
  const double baseline_median = median_of(base_ms), plan_median = median_of(plan_ms);
  const double base_joules_median = median_of(base_joules),
               plan_joules = joules_per_step(final_report.energy);
  const double speedup = baseline_median / plan_median;
  const double predicted_ms = to_milliseconds(best->plan.prediction.step_time);
  // The measured peak covers every host device of the process together; the plan predicts per device.
  Bytes predicted_peak(0);
  for (const auto& d : best->plan.prediction.devices)
    predicted_peak = std::max(predicted_peak, d.peak_memory);
  const Bytes predicted_host_peak = predicted_host_memory(best->plan);

  std::FILE* out = args.json == "-" ? stderr : stdout;
  fmt::print(out, "\npartita optimize {} ({}, batch {})\n", args.model.model, mode_name(mode),
             spec_batch(specs));
  fmt::print(out,
             "candidates (planner's ranking, then measured {} steps each; the two best by the objective ({}) "
             "and the one mirroring plain LibTorch's setting again, alternating):\n",
             probe.steps, objective_name(objective));
  size_t label_width = 52;
  for (const auto& c : candidates) label_width = std::max(label_width, c.label.size());
  for (const auto& c : candidates) {
    std::string measured = std::isfinite(c.measured_ms)
                               ? fmt::format("{:>12}", format_seconds(Seconds(c.measured_ms * 1e-3)))
                               : std::string("cannot run here");
    if (std::isfinite(c.measured_ms) && std::isfinite(c.measured_joules))
      measured += fmt::format(" {:8.3g} J", c.measured_joules);
    fmt::print(out, "  {:<{}} predicted {:>12}  measured {}{}\n", c.label, label_width,
               format_seconds(c.plan.prediction.step_time), measured, &c == &*best ? "  <- chosen" : "");
  }
  fmt::print(out, "plain LibTorch thread sweep:");
  for (const auto& s : sweep)
    fmt::print(out, " [{}: {}]", s.config.to_string(), format_seconds(Seconds(s.median_ms * 1e-3)));
  // The first column as wide as its longest row: a cut label reads as another layout ("cpu:0+cpu" for
  // cpu:0+cpu:1).
  const std::string baseline_row = "plain LibTorch (" + best_base->config.to_string() + ")";
  const std::string plan_row = "partita: " + best->label;
  const size_t width = std::max({size_t{44}, baseline_row.size(), plan_row.size()});
  fmt::print(out, "\n\n{:<{}} {:>12} {:>12} {:>9} {:>12}\n", "", width, "predicted", "measured", "speedup",
             "peak memory");
  // Seconds, milliseconds or microseconds as the figure needs (a small MLP's step is a few microseconds).
  const auto time_of = [](double ms) { return format_seconds(Seconds(ms * 1e-3)); };
  fmt::print(out, "{:<{}} {:>12} {:>12} {:>8.2f}x {:>12}\n", baseline_row, width, "-",
             time_of(baseline_median), 1.0, "-");
  fmt::print(out, "{:<{}} {:>12} {:>12} {:>8.2f}x {:>12}\n", plan_row, width, time_of(predicted_ms),
             time_of(plan_median), speedup, format_bytes(measured_peak));
  fmt::print(
      out,
      "(medians of {} alternating rounds x {} steps{}; predicted peak {} on the largest device, {} on all "
      "host devices together; measured: {})\n",
      total_rounds, final_steps,
      total_rounds > args.rounds ? fmt::format(", {} of them because the first {} disagreed",
                                               total_rounds - args.rounds, args.rounds)
                                 : std::string(),
      format_bytes(predicted_peak), format_bytes(predicted_host_peak),
      best->processes > 1
          ? fmt::format("the CPU tensor memory of its {} processes at their peaks, added (each "
                        "process loads the model)",
                        best->processes)
          : std::string("the plan's CPU tensor memory at its peak"));
  std::string per_round;
  for (double x : round_speedups.per_round) per_round += fmt::format(" {:.2f}x", x);
  fmt::print(out, "speedup per round:{}\n", per_round);
  if (speedup < kSlowerThanPlain) {
    fmt::print(
        out,
        "note: partita's plan measured {:.2f}x plain LibTorch's speed here (rounds {:.2f}x to {:.2f}x): "
        "on this machine keep plain LibTorch at its best setting ({})\n",
        speedup, round_speedups.lowest, round_speedups.highest, best_base->config.to_string());
  }
  const auto estimated = [](const std::vector<DeviceEnergy>& energy) {
    return std::any_of(energy.begin(), energy.end(),
                       [](const DeviceEnergy& e) { return e.source == EnergySource::kEstimated; });
  };
  if (!final_report.energy.empty()) {
    fmt::print(out,
               "energy per step: plain LibTorch {:.3g} J ({}), partita {:.3g} J ({}; predicted {:.3g} J): "
               "{:.2f}x the energy\n",
               base_joules_median, estimated(base_energy) ? "estimated: the whole CPU at TDP" : "measured",
               plan_joules, estimated(final_report.energy) ? "estimated from busy time" : "measured",
               best->plan.prediction.energy.value(), plan_joules / base_joules_median);
  }
  // The same job's rounds differ only by the machine: a wide range bounds how closely any prediction can
  // match (a shared VM's cores switch speed on their own; docs/benchmarks.md).
  const double fastest_round = *std::min_element(base_round_ms.begin(), base_round_ms.end());
  const double slowest_round = *std::max_element(base_round_ms.begin(), base_round_ms.end());
  const double round_range = slowest_round / fastest_round - 1.0;
  if (round_range > kSteadyRoundRange) {
    fmt::print(
        out,
        "note: plain LibTorch's own rounds ranged from {} to {} (+{:.0f}%): this machine's speed changed "
        "during the run, so predicted and measured times can differ by as much\n",
        time_of(fastest_round), time_of(slowest_round), 100.0 * round_range);
  }
  // Plain LibTorch's final rounds against its own figure from before any plan ran: a job that slowed between
  // the two means the machine changed or something a plan run left behind slowed it (an idle OpenMP team did
  // once: docs/status.md), and either way the speedup above is overstated.
  const double base_drift = baseline_median / base_before_ms - 1.0;
  if (base_drift > kSteadyRoundRange) {
    fmt::print(
        out,
        "note: plain LibTorch ran {:.0f}% slower in the final rounds ({}) than at the same setting before "
        "any plan ran ({}): the speedup may be overstated; rerun with nothing else running\n",
        100.0 * base_drift, time_of(baseline_median), time_of(base_before_ms));
  }
  for (const auto& w : final_report.workers) {
    fmt::print(out, "  stage {} on {:<8} utilization {:5.1f}%  busy {}/step (predicted {})\n", w.stage,
               w.device, 100.0 * w.utilization, time_of(w.busy_ms_per_step), time_of(w.predicted_busy_ms));
  }

  namespace fs = std::filesystem;
  fs::create_directories(args.out);
  const Json plan_json = plan_to_json(best->plan);
  write_json_file((fs::path(args.out) / "plan.json").string(), plan_json);
  Json trace = final_report.trace;
  const PlanningInputs& pi = *best->inputs;
  // A launched job's trace has a process row per rank (0..N-1); the simulated timeline goes after them.
  merge_trace(trace, chrome_trace(simulate(best->plan, pi.graph, pi.cluster, pi.table, pi.options)),
              std::max(2, best->processes), "simulated");
  write_json_file((fs::path(args.out) / "trace.json").string(), trace);
  Json result;
  result["model"] = args.model.model;
  result["mode"] = std::string(mode_name(mode));
  result["baseline_ms"] = baseline_median;
  result["baseline_config"] = best_base->config.to_string();
  result["plan_ms"] = plan_median;
  result["layout"] = best->label;
  result["objective"] = std::string(objective_name(objective));
  result["processes"] = best->processes;  // 1: threads of one process; N: the processes of partita launch
  result["baseline_joules"] = base_joules_median;
  result["plan_joules"] = std::isfinite(plan_joules) ? Json(plan_joules) : Json();
  result["energy_estimated"] = estimated(base_energy) || estimated(final_report.energy);
  result["rounds"] = total_rounds;
  result["extra_rounds"] = total_rounds - args.rounds;
  result["steps_per_round"] = final_steps;
  result["speedup"] = speedup;
  result["predicted_ms"] = predicted_ms;
  result["measured_peak_bytes"] = measured_peak.value();
  result["predicted_peak_bytes"] = predicted_peak.value();
  result["predicted_host_peak_bytes"] = predicted_host_peak.value();
  result["baseline_ms_all"] = base_ms;
  result["baseline_round_ms"] = base_round_ms;
  result["plan_round_ms"] = plan_round_ms;
  result["round_speedups"] = round_speedups.per_round;
  result["plan_ms_all"] = plan_ms;
  Json cands = Json::array();
  for (const auto& c : candidates) {
    cands.push_back(
        {{"layout", c.label},
         {"processes", c.processes},
         {"predicted_ms", to_milliseconds(c.plan.prediction.step_time)},
         {"measured_ms", std::isfinite(c.measured_ms) ? Json(c.measured_ms) : Json()},
         {"measured_joules", std::isfinite(c.measured_joules) ? Json(c.measured_joules) : Json()}});
  }
  result["candidates"] = cands;
  Json sweep_json = Json::array();
  for (const auto& s : sweep)
    sweep_json.push_back({{"config", s.config.to_string()},
                          {"median_ms", s.median_ms},
                          {"steps", static_cast<int>(s.step_ms.size())}});
  result["baseline_sweep"] = sweep_json;
  result["baseline_runoff"] = baseline_runoff;
  result["baseline_before_ms"] = base_before_ms;  // the chosen setting before any plan ran
  result["run"] = run_report_to_json(final_report);
  result["plan"] = plan_json;
  write_json_file((fs::path(args.out) / "metrics.json").string(), result);
  write_text_file((fs::path(args.out) / "report.html").string(), optimize_report_html(result, trace));
  fmt::print(out,
             "wrote {}/report.html (open in a browser), plan.json, trace.json (measured and simulated "
             "timelines), metrics.json\n",
             args.out);
  if (best->processes > 1) {
    std::string command = fmt::format("partita launch -n {} -- partita run {} --plan {}", best->processes,
                                      args.model.model, (fs::path(args.out) / "plan.json").string());
    for (const auto& spec : args.model.inputs) command += " --input " + spec;
    if (args.train) command += " --train";
    if (!args.loss.empty()) command += " --loss " + args.loss;
    fmt::print(out, "run the plan as it was measured: {}\n", command);
  }
  if (!args.json.empty()) write_json_file(args.json, result);
}

}  // namespace

Command register_optimize(CLI::App& app) {
  auto args = std::make_shared<OptimizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "optimize", "analyze, plan, measure and run: the fastest way to run this model here");
  add_model_args(*cmd, args->model);
  cmd->add_flag("--train", args->train, "optimize a training step (default: inference)");
  cmd->add_option("--optimizer", args->optimizer, "training: sgd, sgd_momentum, adam (default) or adamw");
  cmd->add_option("--loss", args->loss, "training: auto (default), cross_entropy, mse or next_token");
  cmd->add_option("--out", args->out, "output folder for plan.json, trace.json, metrics.json");
  cmd->add_option("--json", args->json, "write the results as JSON (- for stdout)");
  cmd->add_option("--devices", args->devices,
                  "device list to plan for (default: every core as its own device)");
  cmd->add_option("--steps", args->steps,
                  "least steps per round in the final comparison (short steps get at least 0.3 s per round)")
      ->check(positive_integer());
  cmd->add_option(
         "--rounds", args->rounds,
         "alternating rounds in the final comparison (as many again when their speedups disagree by more "
         "than 15%)")
      ->check(positive_integer());
  cmd->add_option(
      "--objective", args->objective,
      "time (fastest measured), energy (least measured energy per step) or balanced (least energy "
      "within 5% of the fastest); energy is estimated from busy time where no counter is readable");
  cmd->add_option("--candidates", args->candidates, "planner candidates to measure")
      ->check(positive_integer());
  cmd->add_option(
      "--processes", args->processes,
      "one (default: a plan's devices are threads of this process), launch (plan the device set for "
      "the processes of partita launch, one per stage or per device of a one-stage plan, and measure "
      "those plans as such jobs) or both (plan and measure both ways; the best measured wins)");
  return Command{cmd, [args] { run_optimize(*args); }, /*default_threads=*/1};
}

}  // namespace partita::app

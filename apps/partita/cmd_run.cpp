// partita run: execute a plan on this machine's devices and report step time, losses and utilization.
// Under torchrun's environment (WORLD_SIZE > 1: `partita launch` or `torchrun --no_python`), this process is
// one rank of a multi-process job: the plan must be one data-parallel stage with WORLD_SIZE devices (rank r
// runs device r on its share of the same global batch and gradients are all-reduced over Gloo), one
// tensor-parallel stage with WORLD_SIZE devices (rank r runs device r; its tensor group's ranks exchange
// parts over a Gloo group of their own), or a pipeline, rank r running stage r (on that stage's devices,
// which it keeps: after a rebalance that swapped the stages' devices it runs the stage placed on them). Only
// rank 0 prints the table and writes --json/--trace, with every rank's workers and one trace row per rank
// (gathered through the rendezvous store at the end).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.h"
#include "machine_devices.h"
#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/core/json_io.h"
#include "partita/core/log.h"
#include "partita/graph/analysis.h"
#include "partita/hardware/power_cap.h"
#include "partita/runtime/chrome_trace.h"
#include "partita/runtime/device_binding.h"
#include "partita/runtime/distributed_env.h"
#include "partita/runtime/distributed_group.h"
#include "partita/runtime/distributed_reducer.h"
#include "partita/runtime/optimizer.h"
#include "partita/runtime/stage_transport.h"
#include "partita/runtime/tensor_group_link.h"
#include "partita/search/plan_json.h"
#include "partita/torch_bridge/gradient_check.h"
#include "partita/torch_bridge/memory_meter.h"
#include "plan_runner.h"
#include "planning_inputs.h"

namespace partita::app {

namespace {

struct RunArgs {
  ModelArgs model;
  std::string plan;
  int steps = 10;
  bool train = false;
  double lr = 0;     // 0: the optimizer's default (default_learning_rate)
  std::string loss;  // empty: the plan's
  std::string trace;
  std::string json;
  int warmup = -1;  // -1: the default, 2 (0 with --checkpoint-dir)
  std::string checkpoint_dir;
  int checkpoint_every = 0;
  int checkpoint_keep = 0;  // 0: not given (1)
  bool resume = false;
  bool checkpoint_async = false;
  std::string inject_slowdown;
  std::vector<std::string> power_caps;
  bool rebalance = false;
  double rebalance_threshold = 1.3;
  uint64_t seed = 0;
};

// Checkpoint options that do not fit together are refused before the model loads. With a checkpoint
// directory every training step counts (warm-up steps would train the model unrecorded), so the default
// warm-up is 0 and a positive --warmup is refused. Returns the number of warm-up steps.
int check_checkpoint_args(const RunArgs& args) {
  if (args.checkpoint_dir.empty()) {
    PARTITA_CHECK(
        !args.resume && args.checkpoint_every == 0 && args.checkpoint_keep == 0 && !args.checkpoint_async,
        "--resume, --checkpoint-every, --checkpoint-keep and --checkpoint-async need --checkpoint-dir DIR; "
        "add it");
    return args.warmup < 0 ? 2 : args.warmup;
  }
  PARTITA_CHECK(args.train, "--checkpoint-dir ", args.checkpoint_dir,
                " saves training state; add --train (with a training plan)");
  PARTITA_CHECK(args.warmup <= 0, "--warmup ", args.warmup,
                " with --checkpoint-dir: warm-up steps train the model too, so with checkpoints every step ",
                "counts; drop --warmup");
  return 0;
}

// Why the plan's prediction is not for its own devices (a plan whose devices were edited by hand keeps the
// prediction it was written with), or nothing when it is (or has none).
std::optional<std::string> stale_prediction(const Plan& plan) {
  if (plan.prediction.devices.empty()) return std::nullopt;
  const std::vector<std::string> devices = plan.used_devices();
  const std::set<std::string> used(devices.begin(), devices.end());
  std::set<std::string> predicted;
  for (const auto& d : plan.prediction.devices) predicted.insert(d.device);
  if (predicted == used) return std::nullopt;
  return fmt::format("its prediction is for {} but it runs on {} (edited by hand?)",
                     fmt::join(predicted, ", "), fmt::join(used, ", "));
}

// A multi-process plan is data or tensor parallel (one stage whose group has WORLD_SIZE devices: rank r runs
// device r) or a pipeline of WORLD_SIZE stages (rank r runs stage r on its group's devices: one, or several
// for a hybrid plan, a data-parallel group or a tensor group, whose devices then run in that process).
void check_distributed_plan(const Plan& plan, const DistributedEnv& env) {
  const size_t world = static_cast<size_t>(env.world_size);
  const size_t devices = plan.stages.empty() ? 0 : plan.groups.at(plan.stages[0].group).devices.size();
  const bool one_stage = plan.stages.size() == 1 && devices == world;
  const bool pipeline = plan.stages.size() == world && world > 1;
  PARTITA_CHECK(
      one_stage || pipeline, "a ", world,
      "-process run needs a one-stage data- or tensor-parallel plan with ", world,
      " devices (one process per device) or a ", world,
      "-stage pipeline or branch plan (one process per stage), got ", plan.stages.size(), " stage(s) with ",
      devices, " device(s) in the first; plan with --devices LIST of ", world,
      " devices, --strategy data or tensor and --all-devices, or --strategy pipeline, hybrid or branch");
}

// The binding of this rank's whole process: its device, or the union of its stage's devices' cores.
DeviceBinding process_binding(const Plan& plan, int rank) {
  if (plan.stages.size() == 1) {
    return bind_device(plan.groups.at(plan.stages[0].group).devices.at(static_cast<size_t>(rank)));
  }
  const auto& devices = plan.groups.at(plan.stages.at(static_cast<size_t>(rank)).group).devices;
  DeviceBinding all = bind_device(devices.at(0));
  for (size_t d = 1; d < devices.size(); ++d) {
    const DeviceBinding b = bind_device(devices[d]);
    if (b.cores.empty() || all.cores.empty()) {  // a GPU's process is not pinned
      all.cores.clear();
      continue;
    }
    for (int c : b.cores) {
      if (std::find(all.cores.begin(), all.cores.end(), c) == all.cores.end()) all.cores.push_back(c);
    }
  }
  all.threads = 1;  // the workers run the stage on threads of their own; this one only waits for them
  return all;
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

// Where a rank's clock stands against rank 0's, for its trace (see merge_rank_figures).
struct RankClock {
  std::string host;
  ClockOffset offset;
  double skew_us = 0;  // the test hook's (0 outside tests)
};

// Test hook (tests only): PARTITA_CLOCK_SKEW_US=S makes rank PARTITA_FAULT_RANK (default 1) read its steady
// clock S microseconds off and name its host "<host>+skewed", as if it ran on another machine.
double clock_skew_us(int rank) {
  const char* skew = std::getenv("PARTITA_CLOCK_SKEW_US");
  if (skew == nullptr || *skew == '\0') return 0;
  const char* who = std::getenv("PARTITA_FAULT_RANK");
  return rank == (who != nullptr && *who != '\0' ? std::atoi(who) : 1) ? std::atof(skew) : 0;
}

std::string host_name() {
  char name[256] = {};
  return gethostname(name, sizeof(name) - 1) == 0 ? std::string(name) : std::string("unknown");
}

double steady_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What a rank measured itself (its workers' busy time, what its stage offloaded, its trace, with its host and
// clock offset) for rank 0's report; the step times and losses are the job's on every rank already.
std::string rank_figures(const RunReport& report, const std::optional<RankClock>& clock, Bytes host_peak,
                         Bytes model_bytes) {
  Json j = run_report_to_json(report);
  j["host_peak_bytes"] = host_peak.value();
  j["model_bytes"] = model_bytes.value();
  if (!report.trace.is_null()) {
    j["trace"] = report.trace;
    if (clock) {
      j["host"] = clock->host;
      j["clock_offset_us"] = clock->offset.offset_us;
      j["clock_round_trip_us"] = clock->offset.round_trip_us;
      if (j["trace"].contains("origin_us"))
        j["trace"]["origin_us"] = j["trace"]["origin_us"].get<double>() + clock->skew_us;
    }
  }
  return j.dump();
}

// Rank 0's report for the whole job: every rank's workers (by stage, in rank order), each stage's offload
// figures from the rank that ran it, and one trace with a process row per rank. The ranks of one machine
// share its steady clock; a rank on another machine has its trace moved by its measured offset to rank 0's
// clock (DistributedGroup::clock_offset_to_rank0; good to half the store's round trip, ~0.1 ms on a LAN).
void merge_rank_figures(RunReport& report, const std::vector<std::string>& posted) {
  report.workers.clear();
  report.energy.clear();
  Json trace{{"traceEvents", Json::array()}, {"displayTimeUnit", "ms"}};
  double origin = std::numeric_limits<double>::infinity();
  std::vector<Json> figures;
  std::vector<double> origins;  // each rank's trace origin on rank 0's clock
  for (const auto& text : posted) {
    figures.push_back(Json::parse(text));
    const Json& f = figures.back();
    const bool elsewhere = f.contains("host") && f["host"] != figures.front().value("host", f["host"]);
    origins.push_back(f.contains("trace") ? f["trace"].value("origin_us", 0.0) : 0.0);
    if (elsewhere) {
      origins.back() += f.at("clock_offset_us").get<double>();
      log_info(fmt::format(
          "run: rank {} runs on {}: its trace moved {:.3f} ms to rank 0's clock (measured to "
          "within {:.3f} ms)",
          figures.size() - 1, f["host"].get<std::string>(), f.at("clock_offset_us").get<double>() / 1e3,
          f.at("clock_round_trip_us").get<double>() / 2e3));
    }
    if (f.contains("trace") && f["trace"].contains("origin_us")) origin = std::min(origin, origins.back());
  }
  for (size_t r = 0; r < figures.size(); ++r) {
    const Json& f = figures[r];
    for (const auto& w : f.at("workers")) {
      report.workers.push_back(WorkerReport{
          w.at("device").get<std::string>(), w.at("stage").get<int>(), w.at("busy_ms_per_step").get<double>(),
          w.at("utilization").get<double>(), w.at("predicted_busy_ms").get<double>()});
    }
    if (f.contains("offloaded_activations")) {
      const Json& stages = f["offloaded_activations"];
      if (report.offloaded.size() < stages.size()) report.offloaded.resize(stages.size());
      for (size_t k = 0; k < stages.size(); ++k) {
        if (stages[k].at("tensors").get<int64_t>() == 0) continue;
        report.offloaded[k] = OffloadedActivations{stages[k].at("bytes").get<int64_t>(),
                                                   stages[k].at("tensors").get<int64_t>()};
      }
    }
    if (f.contains("energy")) {  // a machine's RAPL packages once, however many of its ranks measured them
      for (const DeviceEnergy& e : energy_from_json(f["energy"])) {
        if (std::none_of(report.energy.begin(), report.energy.end(),
                         [&](const DeviceEnergy& have) { return have.device == e.device; }))
          report.energy.push_back(e);
      }
    }
    if (f.contains("trace")) {
      Json ranked = f["trace"];
      const double shift = ranked.contains("origin_us") ? origins[r] - origin : 0.0;
      for (auto& e : ranked["traceEvents"]) {
        if (e.contains("ts")) e["ts"] = e["ts"].get<double>() + shift;
      }
      merge_trace(trace, ranked, static_cast<int>(r), "rank " + std::to_string(r));
    }
  }
  std::stable_sort(report.workers.begin(), report.workers.end(),
                   [](const WorkerReport& a, const WorkerReport& b) { return a.stage < b.stage; });
  if (!report.trace.is_null()) report.trace = std::move(trace);
}

void run_run(const RunArgs& args) {
  check_output_path(args.json, "--json");
  check_output_path(args.trace, "--trace");
  const auto specs = args.model.specs();
  check_inputs_share_batch(specs);
  Plan plan = plan_from_json(read_json_file(args.plan));
  // Said with the results (a refused plan gets its one error line alone).
  const std::optional<std::string> stale = stale_prediction(plan);
  if (stale) plan.prediction = Prediction{};
  const bool plan_trains = plan.mode == Mode::kTraining;
  PARTITA_CHECK(plan_trains == args.train, "plan '", args.plan, "' is for ", mode_name(plan.mode),
                " but --train was ", args.train ? "given" : "not given", "; plan with",
                args.train ? "" : "out", " --train or run with", plan_trains ? "" : "out", " --train");
  const std::optional<DistributedEnv> dist = distributed_env_from_environment();
  if (dist) check_distributed_plan(plan, *dist);
  const int warmup = check_checkpoint_args(args);
  PARTITA_CHECK(args.lr >= 0 && std::isfinite(args.lr), "--lr ", args.lr,
                ": a learning rate is a positive number; leave --lr out for the optimizer's default (",
                default_learning_rate(plan.optimizer), " for this plan's ", optimizer_name(plan.optimizer),
                ")");
  std::optional<SlowdownSpec> slowdown;
  if (!args.inject_slowdown.empty()) {
    slowdown = parse_slowdown_spec(args.inject_slowdown);
    PARTITA_CHECK(slowdown->stage < static_cast<int>(plan.stages.size()), "--inject-slowdown '",
                  args.inject_slowdown, "': the plan has ", plan.stages.size(),
                  " stage(s); name a stage from 0 to ", plan.stages.size() - 1);
  }
  // Across processes each rank keeps its devices: a data-parallel plan's batch shares, a pipeline's cuts or a
  // branch plan's node lists move.
  PARTITA_CHECK(
      !(args.rebalance && dist && plan.has_tensor_groups()),
      "--rebalance across processes moves a data-parallel plan's batch shares, a pipeline's cuts or a branch "
      "plan's node lists; a tensor-parallel plan's parts stay in their processes: run it in one process "
      "(without partita launch / torchrun) to rebalance it, or without --rebalance");
  std::vector<PowerCapRequest> caps;
  for (const auto& text : args.power_caps) caps.push_back(parse_power_cap(text));
  PARTITA_CHECK(caps.empty() || !dist, "--power-cap caps the machine for one process; this is rank ",
                dist ? dist->rank : 0, " of a multi-process job: cap the devices before starting it");
  // A plan made for capped GPUs (partita plan --power-cap) predicts them capped; a run does not change
  // hardware limits unless asked.
  for (const auto& [device, watts] : plan.source.power_caps) {
    const bool applied =
        std::any_of(caps.begin(), caps.end(), [&, d = device, w = watts](const PowerCapRequest& c) {
          return c.device == d && std::abs(c.watts.value() - w) < 0.5;
        });
    if (!applied) {
      log_warning(
          fmt::format("the plan was made for {} capped at {:.4g} W; this run leaves its power limit as it is "
                      "(add --power-cap {}:{:.4g} to apply that cap; it needs root)",
                      device, watts, device, watts));
    }
  }
  // The process's host memory: the meter counts CPU tensors allocated after it is installed, so before the
  // model is loaded. One process is compared with the plan's prediction; in a multi-process job every rank
  // loads the whole model, which the prediction (one process per machine) does not: each rank's is reported.
  MemoryMeter& meter = MemoryMeter::install();
  LoadedModel model = load_model(args.model.model, module_mode(plan.mode), specs);
  annotate_shapes(model, specs);
  if (args.train) check_trainable(model, specs);
  // A plan made before partita checked this, or by hand: split, such a model computes something else.
  if (plan.splits_batch()) {
    if (const auto problem = batch_split_problem(model, specs)) {
      PARTITA_FAIL("the plan splits each step's batch (", plan.microbatches, " microbatch(es), ",
                   plan.used_devices().size(), " device(s)) but ", args.model.model,
                   " computes something else on part of it: ", *problem,
                   "; or plan again (partita plan keeps such a model's batch whole)");
    }
  }
  PARTITA_CHECK(
      plan.smallest_share() >= min_samples_per_share(model.ir), "the plan runs a microbatch share of ",
      plan.smallest_share(), " sample(s), but ", args.model.model,
      " normalizes a [batch, channels] tensor by its batch's statistics (batch norm traced in train "
      "mode), which on one sample outputs its bias alone; plan again (partita plan gives every device "
      "at least 2 samples) or use a larger batch");
  RunOptions options;
  options.steps = args.steps;
  options.warmup = warmup;
  options.checkpoint_dir = args.checkpoint_dir;
  options.checkpoint_every = args.checkpoint_every;
  options.checkpoint_keep = std::max(1, args.checkpoint_keep);
  options.resume = args.resume;
  options.checkpoint_writes =
      args.checkpoint_async ? CheckpointWrites::kBackground : CheckpointWrites::kSynchronous;
  options.learning_rate = args.lr;
  options.random_seed = args.seed;
  options.loss = args.loss.empty() ? plan.loss : parse_loss_kind(args.loss);
  options.record_trace = !args.trace.empty();
  options.inject_slowdown = slowdown;
  options.rebalance = args.rebalance;
  // This process runs one plan: a lone worker may run on the main thread (measured ~1.5% faster on a one-core
  // CNN run). Not in a multi-process job: there it measured slower (zoo CNN, 2 ranks: 0.61-0.73x of DDP's
  // throughput with it, 0.94x without).
  options.inline_lone_worker = !dist;
  options.rebalance_options.drift.threshold = args.rebalance_threshold;
  options.rebalance_options.drift.validate();
  log_info(fmt::format("run: {} on {} device(s), {} step(s)", args.model.model, plan.used_devices().size(),
                       args.steps));
  std::unique_ptr<DistributedGroup> group;
  std::unique_ptr<DistributedGradientReducer> reducer;
  std::unique_ptr<DistributedStageTransport> transport;
  std::unique_ptr<DistributedTensorGroupLink> tensor_link;
  if (dist) {
    // The whole process works for its rank's device: pin the main thread before c10d starts its threads
    // so they inherit it (as a DDP job pinned with sched_setaffinity does). Floating Gloo threads landed on
    // the other rank's core and made 2-rank CNN steps bimodal (~2 or ~4 ms).
    apply_to_current_thread(process_binding(plan, dist->rank));
    group = std::make_unique<DistributedGroup>(*dist);
    options.group = group.get();
    reducer = std::make_unique<DistributedGradientReducer>(*group);
    options.reducer = reducer.get();
    // A pipeline: rank r starts on stage r (the loss and shared weights are reduced).
    if (plan.stages.size() > 1) {
      transport = std::make_unique<DistributedStageTransport>(*group);
      options.local_stage = dist->rank;
      options.transport = transport.get();
    } else {
      options.local_replica = dist->rank;
      const DeviceGroup& g = plan.groups.at(plan.stages[0].group);
      if (g.parallelism ==
          GroupParallelism::kTensor) {  // the ranks of this rank's tensor group exchange parts
        const int degree = g.tensor_degree();
        std::vector<int> ranks;
        for (int r = dist->rank / degree * degree; r < (dist->rank / degree + 1) * degree; ++r)
          ranks.push_back(r);
        tensor_link = std::make_unique<DistributedTensorGroupLink>(*group, ranks);
        options.tensor_link = tensor_link.get();
      }
    }
  }
  // Power caps hold for the run and are put back when it ends, fails or is interrupted (Ctrl-C or SIGTERM
  // stop it between steps, so the caps are restored on the way out). PARTITA_POWERCAP_ROOT points the RAPL
  // reader at another powercap tree (tests). A checkpointed training run stops between steps too, after
  // saving the steps done (a scheduler's SIGTERM loses no work); the ranks of a job agree on the step first.
  std::optional<Nvml> nvml;
  std::optional<Rapl> rapl;
  std::unique_ptr<PowerCaps> power;
  std::optional<StopOnSignal> stop;
  // Limits that a partita run killed outright left capped go back first (their journals say what they were).
  const std::string journal_dir = default_power_cap_journal_dir();
  if (std::filesystem::is_directory(journal_dir)) {
    nvml.emplace();
    rapl.emplace(powercap_root());
    for (const auto& line : recover_power_caps(journal_dir, *nvml, *rapl)) log_warning(line);
  }
  if (!caps.empty() || !options.checkpoint_dir.empty()) {
    stop.emplace();
    options.stop_requested = &stop->requested();
  }
  if (!caps.empty()) {
    if (!nvml) nvml.emplace();
    if (!rapl) rapl.emplace(powercap_root());
    power = std::make_unique<PowerCaps>(caps, *nvml, *rapl, journal_dir);
    for (const auto& line : power->applied()) log_info("power cap: " + line);
  }
  RunReport report;
  // What the run adds to the tensors alive before it (the model's, which it uses, are added back).
  const Bytes before = meter.current_bytes();
  const Bytes model_before = model_tensor_bytes(model);
  meter.reset_peak();
  try {
    report = run_plan(model, plan, specs, options);
    if (group) group->barrier("the end-of-run barrier");
  } catch (const std::exception& e) {
    if (!group) throw;
    exit_failed_rank(*group, e);
  }
  // What the run holds above the tensors alive before it, plus the model's. A pipeline rank released the
  // weights only other stages read when it started (and reset the meter's peak then): its peak is below
  // `before` by what it released, which the model's bytes before the run count back in.
  const Bytes held_model = model_tensor_bytes(model);
  const Bytes host_peak = meter.peak_bytes() - before + model_before;
  // A multi-process job's, in rank order (rank 0 reports them).
  std::vector<int64_t> rank_host_peaks, rank_model_bytes;
  if (group) {
    try {
      std::optional<RankClock> clock;
      if (!args.trace.empty()) {  // every rank has the same command line: all of them align, or none
        const double skew = clock_skew_us(dist->rank);
        clock = RankClock{host_name() + (skew != 0 ? "+skewed" : ""),
                          group->clock_offset_to_rank0([skew] { return steady_us() + skew; }), skew};
      }
      const auto posted =
          group->gather_to_rank0("run report", rank_figures(report, clock, host_peak, held_model));
      if (dist->rank != 0) return;  // rank 0 reports for the job
      merge_rank_figures(report, posted);
      for (const auto& text : posted) {
        const Json figures = Json::parse(text);
        rank_host_peaks.push_back(figures.at("host_peak_bytes").get<int64_t>());
        rank_model_bytes.push_back(figures.at("model_bytes").get<int64_t>());
      }
    } catch (const std::exception& e) {
      exit_failed_rank(*group, e);
    }
  }

  std::FILE* out = args.json == "-" ? stderr : stdout;
  // A figure the plan does not predict (its prediction was left out above) prints as "-".
  const auto predicted = [](double ms, int width) {
    return ms > 0 ? fmt::format("{:{}.2f}", ms, width) : fmt::format("{:>{}}", "-", width);
  };
  fmt::print(out, "step time {:.2f} ms median of {} (spread {:.2f} ms), {:.1f} samples/s; predicted {} ms\n",
             report.median_ms, report.step_ms.size(), report.spread_ms, report.samples_per_second,
             predicted(to_milliseconds(plan.prediction.step_time), 0));
  if (stale) {
    fmt::print(out,
               "  no prediction: {}; plan again, or `partita simulate --json` the plan once its \"source\" "
               "names these devices\n",
               *stale);
  }
  for (const auto& w : report.workers) {
    fmt::print(out, "  stage {} on {:<8} busy {:8.2f} ms/step (predicted {}), utilization {:5.1f}%\n",
               w.stage, w.device, w.busy_ms_per_step, predicted(w.predicted_busy_ms, 8),
               100.0 * w.utilization);
  }
  if (!report.losses.empty()) {
    // --loss auto reads a [batch, k] float output as class scores: say so, since a regression head looks
    // the same.
    const bool guessed =
        options.loss == LossKind::kAuto && report.loss == loss_kind_name(LossKind::kCrossEntropy);
    fmt::print(
        out, "  loss {:.6g} -> {:.6g} ({}{})\n", report.losses.front(), report.losses.back(), report.loss,
        guessed ? ", chosen by --loss auto: the first output read as class scores; --loss mse if it is "
                  "a regression"
                : "");
  }
  if (!report.energy.empty()) {
    double total = 0;
    std::vector<std::string> parts;
    for (const auto& e : report.energy) {
      total += e.joules_per_step;
      parts.push_back(
          fmt::format("{} {:.3g} J ({})", e.device, e.joules_per_step, energy_source_name(e.source)));
    }
    fmt::print(out, "  energy {:.3g} J/step: {}{}\n", total, fmt::join(parts, ", "),
               std::any_of(report.energy.begin(), report.energy.end(),
                           [](const DeviceEnergy& e) { return e.source == EnergySource::kEstimated; })
                   ? "; estimated = TDP x measured busy + idle power x the rest (no RAPL/NVML counter)"
                   : "");
  }
  const Bytes predicted_host = predicted_host_memory(plan);
  const std::string predicted_text =
      predicted_host.value() > 0 ? format_bytes(predicted_host) : std::string("nothing (old plan)");
  // A plan made with --processes launch predicts each rank's host memory (search/plan.h ProcessPeak).
  std::map<int, Bytes> predicted_rank;
  for (const auto& h : plan.prediction.hosts) {
    for (const ProcessPeak& p : h.processes) predicted_rank[p.rank] = p.peak_memory;
  }
  if (MemoryMeter::tracing_peak()) {
    std::fflush(stdout);
    meter.write_peak_allocations(stderr);
  }
  if (!group) {
    fmt::print(
        out, "  host memory peak {} (CPU tensors: the model's and what the run allocated); predicted {}{}\n",
        format_bytes(host_peak), predicted_text,
        predicted_rank.empty()
            ? std::string()
            : fmt::format(" for the {} processes of partita launch together", predicted_rank.size()));
  } else {
    const bool per_rank = predicted_rank.size() == rank_host_peaks.size();
    std::vector<std::string> parts;
    int64_t sum = 0;
    for (size_t r = 0; r < rank_host_peaks.size(); ++r) {
      const auto rank_predicted = predicted_rank.find(static_cast<int>(r));
      parts.push_back(fmt::format("rank {} {} ({}model tensors {})", r,
                                  format_bytes(Bytes(rank_host_peaks[r])),
                                  per_rank && rank_predicted != predicted_rank.end()
                                      ? "predicted " + format_bytes(rank_predicted->second) + "; "
                                      : std::string(),
                                  format_bytes(Bytes(rank_model_bytes[r]))));
      sum += rank_host_peaks[r];
    }
    fmt::print(out,
               "  host memory peak per rank (CPU tensors; a pipeline rank keeps the weights its stage reads, "
               "a tensor-parallel rank its parts of the split weights, other ranks the whole model): {}; "
               "together {}; the plan predicts {}{}\n",
               fmt::join(parts, ", "), format_bytes(Bytes(sum)), predicted_text,
               per_rank ? " together" : " for one process per machine");
    const bool shared = group->shares_memory() && (!tensor_link || tensor_link->shares_memory());
    fmt::print(out, "  collectives between the ranks: {}\n",
               shared ? "through shared memory (one host)"
               : group->shares_memory() || (tensor_link && tensor_link->shares_memory())
                   ? "partly through shared memory, partly through Gloo (TCP)"
                   : "through Gloo (TCP)");
    if (transport)
      fmt::print(out, "  messages between the stages' ranks: {}\n",
                 group->messages_share_memory() ? "through shared memory (one host)" : "through Gloo (TCP)");
    // A plan made with --processes one was simulated as threads of one process; what the ranks pass
    // between processes costs more (docs/benchmarks.md, "Collectives through shared memory").
    if (plan.prediction.step_time.value() > 0 && plan.processes == ProcessLayout::kOne)
      fmt::print(out,
                 "  the prediction is the plan's in one process: it does not count passing data "
                 "between {} processes (plan with --processes launch to count it)\n",
                 rank_host_peaks.size());
    if (plan.prediction.step_time.value() > 0 && plan.processes == ProcessLayout::kLaunch)
      fmt::print(
          out,
          "  the prediction counts passing data between the {} processes (planned with --processes launch)\n",
          rank_host_peaks.size());
  }
  if (!dist && plan.prediction.step_time.value() > 0 && plan.processes == ProcessLayout::kLaunch)
    fmt::print(out,
               "  the prediction is for the processes of partita launch (planned with --processes launch); "
               "this run is one process\n");
  for (size_t k = 0; k < report.offloaded.size(); ++k) {
    const auto& o = report.offloaded[k];
    if (o.tensors > 0)
      fmt::print(out, "  stage {} offloaded {} saved tensors, {} per step, to host memory\n", k, o.tensors,
                 format_bytes(Bytes(o.bytes)));
  }
  if (report.parameter_homes.size() > 1 ||
      (report.parameter_homes.size() == 1 && report.parameter_homes.begin()->first != "host")) {
    std::vector<std::string> parts;
    for (const auto& [home, count] : report.parameter_homes)
      parts.push_back(fmt::format("{} on {}", count, home == "host" ? "the host" : home));
    fmt::print(out, "  parameter tensors kept and updated: {}\n", fmt::join(parts, ", "));
  }
  for (const auto& e : report.rebalances) {
    fmt::print(out, "  after step {}: {}; {} {} (predicted {:.2f} -> {:.2f} ms)\n", e.step, e.drift,
               e.applied ? "rebalanced to" : "kept the plan; best alternative", e.to, e.predicted_current_ms,
               e.predicted_new_ms);
  }
  if (!args.trace.empty()) write_json_file(args.trace, report.trace);
  if (!args.json.empty()) {
    Json j = run_report_to_json(report);
    j["predicted_ms"] = plan.prediction.step_time.value() > 0
                            ? Json(to_milliseconds(plan.prediction.step_time))
                            : Json(nullptr);
    if (!group) j["measured_host_peak_bytes"] = host_peak.value();
    if (group) {
      j["measured_host_peak_bytes_per_rank"] = rank_host_peaks;
      if (predicted_rank.size() == rank_host_peaks.size()) {
        std::vector<int64_t> per_rank;
        for (const auto& [rank, bytes] : predicted_rank) per_rank.push_back(bytes.value());
        j["predicted_host_peak_bytes_per_rank"] = per_rank;
      }
      j["model_bytes_per_rank"] = rank_model_bytes;  // the model's tensors each rank holds at the end
      // How this rank's collectives travel: "shared_memory" (ranks of one host) or "gloo".
      const auto via = [](bool shared) { return shared ? "shared_memory" : "gloo"; };
      j["collectives"] = {{"all_reduce", via(group->shares_memory())}};
      if (tensor_link) j["collectives"]["tensor_group"] = via(tensor_link->shares_memory());
      if (transport) j["collectives"]["point_to_point"] = via(group->messages_share_memory());
    }
    j["predicted_host_peak_bytes"] = predicted_host.value();
    if (args.rebalance) j["final_plan"] = plan_to_json(report.final_plan);
    write_json_file(args.json, j);
  }
}

}  // namespace

Command register_run(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "execute a plan (from partita plan --json) on this machine");
  add_model_args(*cmd, args->model);
  cmd->add_option("--plan", args->plan, "plan JSON from partita plan")->required()->check(CLI::ExistingFile);
  cmd->add_option("--steps", args->steps,
                  "steps to time (after the warm-up steps); with --checkpoint-dir: the job's total number of "
                  "training steps, a resumed run continues up to it")
      ->check(positive_integer());
  cmd->add_option("--warmup", args->warmup,
                  "untimed steps run first (default 2; they train the model too: 0 with --checkpoint-dir)")
      ->check(nonnegative_integer());
  cmd->add_flag("--train", args->train, "training steps (the plan must be a training plan)");
  cmd->add_option("--lr", args->lr,
                  "learning rate (default: 0.001 for adam and adamw, 0.01 for sgd and sgd_momentum)")
      ->check(positive_number("0.01"));
  cmd->add_option("--loss", args->loss,
                  "auto, cross_entropy, mse or next_token (default: the plan's, from plan --loss; auto)");
  cmd->add_option(
         "--seed", args->seed,
         "seeds the model's random draws (dropout masks, noise): each device draws from a generator of "
         "its own, seeded from this, so a run is repeatable (default 0)")
      ->check(nonnegative_integer(LLONG_MAX));
  cmd->add_option("--trace", args->trace, "write a Chrome trace of the run (open in Perfetto)");
  cmd->add_option("--json", args->json, "write results as JSON (- for stdout)");
  cmd->add_option("--checkpoint-dir", args->checkpoint_dir,
                  "training: save checkpoints in DIR (model tensors, optimizer state, step count, losses, "
                  "plan); no warm-up steps, every step counts; DIR must hold none unless --resume is given; "
                  "several processes: every rank must reach DIR (a pipeline's ranks each write their stage)");
  cmd->add_option("--checkpoint-every", args->checkpoint_every,
                  "save after every K-th step (step numbers counted from the start of training) and after "
                  "the last; default: only after the last")
      ->check(positive_integer());
  cmd->add_option("--checkpoint-keep", args->checkpoint_keep,
                  "keep the N newest checkpoints in --checkpoint-dir (default 1); to go back to an older "
                  "one, write its directory name (step-00000010) into DIR/LATEST and --resume")
      ->check(positive_integer());
  cmd->add_flag(
      "--checkpoint-async", args->checkpoint_async,
      "write checkpoints on a background thread while training goes on: the training loop only copies "
      "the state into memory (held until written; one save at a time, the run waits for the last); "
      "a pipeline across processes: each rank its stage's, rank 0 commits them together");
  cmd->add_flag("--resume", args->resume,
                "continue from the checkpoint in --checkpoint-dir (same model, plan, --input, --loss, --lr) "
                "up to --steps; the losses of the steps after it equal those of an uninterrupted run");
  cmd->add_option(
      "--inject-slowdown", args->inject_slowdown,
      "STAGE:FACTOR:STEP: fault injection; the device of STAGE runs FACTOR times slower from STEP "
      "on (steps counted from 0, warm-up included), e.g. 0:2:10");
  cmd->add_option(
      "--power-cap", args->power_caps,
      "DEVICE:WATTS: cap cuda:N (NVML) or every CPU package (cpu, RAPL) for the run and restore the "
      "previous limit afterwards; needs root; repeatable");
  cmd->add_flag(
      "--rebalance", args->rebalance,
      "watch each device's busy time against the plan; when one drifts for 3 steps, plan again with "
      "the measured slowdown and switch plans between steps (several processes: a data-parallel plan's "
      "batch shares or a pipeline's cuts)");
  cmd->add_option("--rebalance-threshold", args->rebalance_threshold,
                  "relative slowdown of one device (vs the others, since the plan started) that counts as "
                  "drift")
      ->check(CLI::Range(1.01, 100.0));
  return Command{cmd, [args] { run_run(*args); }, /*default_threads=*/1};
}

}  // namespace partita::app

// partita estimate: predicted step time, peak memory and energy of a model on one local device, from a cost
// table (roofline over the measured machine profile, or per-op profiled times); with --measure, the real
// step for comparison.
#include <algorithm>
#include <cstdio>
#include <optional>

#include <fmt/format.h>
#include <torch/torch.h>

#include "commands.h"
#include "machine_devices.h"
#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/core/json_io.h"
#include "partita/core/log.h"
#include "partita/cost/compute.h"
#include "partita/cost/energy.h"
#include "partita/cost/loss.h"
#include "partita/cost/memory.h"
#include "partita/cost/update.h"
#include "partita/hardware/nvml.h"
#include "partita/runtime/blas_threads.h"
#include "partita/torch_bridge/executor.h"
#include "partita/torch_bridge/gradient_check.h"
#include "partita/torch_bridge/memory_meter.h"
#include "partita/torch_bridge/op_profiler.h"
#include "step_measurement.h"

namespace partita::app {

namespace {

struct EstimateArgs {
  ModelArgs model;
  std::string device;
  bool train = false;
  std::string optimizer;  // empty: sgd
  std::string loss;       // empty: auto
  std::string cost = "roofline";
  bool measure = false;
  std::string json;
};

struct ThreadChoice {
  int threads = 1;
  std::string why;
};

// The intra-op thread count for the whole "cpu": the count (1..N, as profiled) whose roofline step time for
// this model is lowest, so a matmul-heavy model gets the count that is best for matmul, a conv-heavy or
// memory-bound one the count best for those; on a 2-core VM with OpenBLAS these differ.
ThreadChoice choose_cpu_threads(const Graph& g, const MachineProfile& p, bool train) {
  const ProfiledDevice* whole = p.find("cpu");
  PARTITA_ASSERT(whole != nullptr, "the machine profile has no 'cpu' device");
  ThreadChoice best;
  double best_time = -1;
  std::string all;
  for (const auto& sample : p.thread_scaling) {
    const CostTable t = roofline_cost_table(g, {cpu_spec_at_threads(p, whole->spec, sample.threads)});
    const NodeTimes total = g.num_nodes() > 0 ? t.range_total(0, 0, g.num_nodes() - 1) : NodeTimes{};
    const double s = (total.forward + (train ? total.backward : Seconds(0))).value();
    all += fmt::format("{}{}: {:.3f} ms", all.empty() ? "" : ", ", sample.threads, s * 1e3);
    if (best_time < 0 || s < best_time) {
      best_time = s;
      best.threads = sample.threads;
    }
  }
  best.why = "fastest under the roofline (" + all + ")";
  return best;
}

// One elementwise op over `bytes` (read + written): the spec's calibrated elementwise class when it has
// one, else the plain roofline (bandwidth plus op_overhead).
Seconds elementwise_op_time(const DeviceSpec& spec, Flops flops, Bytes bytes) {
  const auto fit = spec.op_class_fits.find("elementwise");
  if (fit == spec.op_class_fits.end()) return bytes / spec.memory_bandwidth + spec.op_overhead;
  return roofline_time(OpCost{flops, bytes, Bytes(0), CostStatus::kEstimated}, spec, DType::kFloat32,
                       fit->second);
}

// The loss and the optimizer step under the roofline: the loss reads the floating outputs and writes one
// tensor of their size (cross-entropy's log-softmax, MSE's difference), its backward the same again (the
// outputs' gradient); the update is cost/update.h's optimizer_step_time over the trainable parameters.
Seconds roofline_loss_and_update(const Graph& g, const DeviceSpec& spec, Optimizer optimizer) {
  Seconds t(0);
  for (ValueId v : g.outputs()) {
    const Value& out = g.value(v);
    if (!out.meta() || !is_floating(out.meta()->dtype)) continue;
    const Bytes bytes = out.bytes();
    t += elementwise_op_time(spec, Flops(static_cast<double>(bytes.value()) / 4), bytes * 2.0) * 2.0;
  }
  Bytes trainable(0);
  int tensors = 0;
  for (const auto& p : g.parameters()) {
    if (!p.requires_grad) continue;
    trainable += g.value(p.value).bytes();
    ++tensors;
  }
  return t + optimizer_step_time(trainable, tensors, optimizer, spec);
}

// The optimizer step's own peak: every parameter, every trainable one's gradient, the optimizer state and
// the step's temporaries while it updates the largest parameter (the activations are gone by then).
Bytes update_peak_bytes(const Graph& g, Optimizer optimizer) {
  Bytes all(0), trainable(0), largest(0);
  for (const auto& p : g.parameters()) {
    const Bytes b = g.value(p.value).bytes();
    all += b;
    if (!p.requires_grad) continue;
    trainable += b;
    largest = std::max(largest, b);
  }
  return all + trainable + optimizer_state_bytes(trainable, optimizer) +
         optimizer_step_temporaries(largest, optimizer);
}

// With --cost profiled --measure: the most in-situ runs, each followed by a real step (small models reach
// this before the time budget; 1000 runs of the mlp's 0.25 ms step take 0.25 s).
constexpr int kInterleavedMaxRuns = 1000;

double error_pct(double predicted, double measured) {
  return measured > 0 ? 100.0 * (predicted - measured) / measured : 0.0;
}

void run_estimate(const EstimateArgs& args) {
  check_output_path(args.json, "--json");
  PARTITA_CHECK(args.optimizer.empty() || args.train, "--optimizer ", args.optimizer,
                ": an optimizer is for training; add --train or leave --optimizer out");
  PARTITA_CHECK(args.loss.empty() || args.train, "--loss ", args.loss,
                ": a loss is for training; add --train or leave --loss out");
  const Optimizer optimizer = args.optimizer.empty() ? Optimizer::kSgd : parse_optimizer(args.optimizer);
  const LossKind loss = args.loss.empty() ? LossKind::kAuto : parse_loss_kind(args.loss);
  PARTITA_CHECK(args.cost == "roofline" || args.cost == "profiled", "unknown --cost '", args.cost,
                "': use roofline or profiled");
  const DeviceId id = parse_device_id(args.device);
  PARTITA_CHECK(id.kind != DeviceKind::kCuda || torch::cuda::is_available(), "device ", args.device,
                " is not here: LibTorch sees no CUDA device; use cpu, cpu:N or cpu:A-B");
  // Before the model loads, so its parameters count in the measured peak.
  if (args.measure && id.kind == DeviceKind::kCpu) MemoryMeter::install();
  const auto specs = args.model.specs();
  LoadedModel model =
      load_model(args.model.model, args.train ? ModuleMode::kTrain : ModuleMode::kEval, specs);
  annotate_shapes(model, specs);
  if (args.train) check_trainable(model, specs);
  const Graph& g = model.ir;

  const auto db = try_load_hardware_db();
  const CachedProfile cached = machine_profile(db ? &*db : nullptr, /*refresh=*/false);
  const ThreadChoice choice = choose_cpu_threads(g, cached.profile, args.train);
  const ResolvedDevice dev = resolve_device(cached.profile, id, choice.threads);
  if (dev.threads > 0) at::set_num_threads(dev.threads);
  // OpenBLAS keeps a thread pool of its own. With more than one intra-op thread on a CPU, partita's engine
  // sets it to one thread (BlasThreads::kAuto in engine.cpp), so the step predicted and measured here is
  // that step. Left at its default, both pools spin on the same cores: a mobilenet_v2 training step (batch
  // 2, 2 threads) took 19-27 ms with ~100 ms outliers a tenth of the time, instead of a steady 19 ms.
  if (id.kind == DeviceKind::kCpu && dev.threads > 1) set_blas_threads(1);
  const int blas = blas_threads();  // -1: not OpenBLAS
  const torch::Device torch_device =
      id.kind == DeviceKind::kCuda ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(id.index))
                                   : torch::Device(torch::kCPU);
  ExecutorOptions exec_options;
  exec_options.device = torch_device;
  const Executor executor(model, exec_options);
  const auto input_tensors = make_inputs(specs, /*seed=*/7, torch_device);
  const std::vector<c10::IValue> inputs(input_tensors.begin(), input_tensors.end());
  std::optional<TrainingStep> training;
  if (args.train) training.emplace(executor, inputs, loss, optimizer);
  TrainingStep* const train_step = training ? &*training : nullptr;
  TimingOptions timing{2, 5, 100, Seconds(1.5), {}};
  if (torch_device.is_cuda()) timing.sync = [] { torch::cuda::synchronize(); };

  CostTable table = roofline_cost_table(g, {dev.spec});
  Seconds update(0);
  Seconds executor_overhead(0);  // profiled: once per forward, outside the nodes
  std::optional<InterleavedSteps> interleaved;
  if (args.cost == "profiled") {
    OpProfileOptions po;
    po.backward = args.train;
    po.device_key = fmt::format("{}|blas{}", id.to_string(), blas);
    po.cache_path = default_op_cache_path();
    if (torch_device.is_cuda()) po.timing.sync = timing.sync;
    // Training: the in-situ pass runs the same step as --measure (its loss, and its update after backward),
    // so the loss and update are timed where they run, and every part after the work that precedes it in a
    // real step.
    if (training) {
      po.in_situ_loss = [&](const std::vector<c10::IValue>& outputs) { return training->loss(outputs); };
      po.in_situ_update = [&] { training->update(); };
    }
    // --measure on a CPU: one real step after every in-situ run, so that both sides sample the same stretch
    // of this drifting machine (a mobilenet_v2 training step here runs at ~20 ms for seconds, then at
    // ~27 ms, with ~100 ms outliers); both sides get the measuring budget.
    if (args.measure && !torch_device.is_cuda()) {
      interleaved.emplace(executor, inputs, train_step);
      po.between_in_situ_runs = [&](bool timed) { interleaved->step(timed); };
      po.in_situ_budget = timing.budget;
      po.in_situ_max_runs = kInterleavedMaxRuns;
    }
    const OpProfileResult profiled = profile_ops(executor, inputs, po);
    apply_measured_times(table, 0, profiled.times);
    if (args.train) update = profiled.in_situ_loss + profiled.in_situ_update;
    executor_overhead = profiled.in_situ_forward_outside_nodes;
  } else if (args.train) {
    update = roofline_loss_and_update(g, dev.spec, optimizer);
  }
  const NodeTimes total = g.num_nodes() > 0 ? table.range_total(0, 0, g.num_nodes() - 1) : NodeTimes{};
  const Seconds predicted =
      total.forward + executor_overhead + (args.train ? total.backward + update : Seconds(0));
  const KernelSite site{!torch_device.is_cuda(), std::max(1, at::get_num_threads())};
  const MemoryEstimate mem =
      estimate_memory(g, 0, std::max(0, g.num_nodes() - 1), args.train, optimizer, 1, 1.0, site);
  // Training: the step's peak is the highest of three moments. As the loss's own backward starts, every
  // result and saved tensor of the forward is there with the loss's peak (cost/loss.h loss_backward_bytes)
  // and no gradient yet; in the backward of the model's nodes, only the loss's targets are left of it (the
  // output's gradient is freed at the last node, whose own peak the loss's start outweighs); at the optimizer
  // step, the model state and the step's temporaries. (The planner's stage model keeps loss_step_bytes
  // through the whole backward: an upper bound, one tensor of the outputs' size over when a node inside
  // peaks, as GPT 2x128's do.)
  const Bytes loss_bytes = training ? loss_target_bytes(g, training->loss_kind()) : Bytes(0);
  const Bytes backward_peak = mem.total() + loss_bytes;
  const Bytes loss_peak = training ? mem.parameters + mem.optimizer_state +
                                         saved_activation_bytes(g, 0, g.num_nodes() - 1) +
                                         loss_backward_bytes(g, training->loss_kind())
                                   : Bytes(0);
  const Bytes update_peak = training ? update_peak_bytes(g, optimizer) : Bytes(0);
  const Bytes predicted_peak = std::max({backward_peak, loss_peak, update_peak});
  EnergyEstimate energy = estimate_device_energy(dev.spec, predicted, Seconds(0));

  std::optional<StepMeasurement> measured;
  std::optional<Joules> measured_joules;
  if (args.measure) {
    log_info("measuring the real step");
    const Nvml nvml;
    const bool nvml_energy = torch_device.is_cuda() && nvml.total_energy(id.index).has_value();
    const auto e0 = nvml_energy ? nvml.total_energy(id.index) : std::nullopt;
    measured = interleaved && interleaved->timed_steps() > 0
                   ? interleaved->finish()
                   : measure_step(executor, inputs, train_step, timing);
    if (nvml_energy) {
      // The meter covers the timed repeats plus warm-up and the memory run; per step is an average.
      const int steps = measured->repeats + timing.warmup + 1;
      measured_joules = (*nvml.total_energy(id.index) - *e0) / static_cast<double>(steps);
    }
  }

  std::FILE* out = args.json == "-" ? stderr : stdout;
  const std::string threads_text =
      dev.threads > 0
          ? fmt::format(", {} thread(s){}{}", dev.threads, blas > 0 ? fmt::format(", OpenBLAS {}", blas) : "",
                        id.index < 0 ? ": " + choice.why : "")
          : "";
  const std::string step_text = training
                                    ? fmt::format("training step ({}, loss {})", optimizer_name(optimizer),
                                                  loss_kind_name(training->loss_kind()))
                                    : "inference";
  fmt::print(out, "estimate {} on {} ({}{}), {}, cost {}\n", args.model.model, id.to_string(), dev.spec.name,
             threads_text, step_text, args.cost);
  fmt::print(out, "  predicted step:   {:>10.3f} ms  (forward {:.3f} ms{}{})\n", to_milliseconds(predicted),
             to_milliseconds(total.forward),
             executor_overhead.value() > 0
                 ? fmt::format(" + executor {:.3f} ms", to_milliseconds(executor_overhead))
                 : "",
             args.train ? fmt::format(", backward {:.3f} ms, loss+update {:.3f} ms",
                                      to_milliseconds(total.backward), to_milliseconds(update))
                        : "");
  if (training) {
    fmt::print(
        out,
        "  predicted memory: {:>10}  (at the backward's peak {}: parameters {}, gradients {}, optimizer "
        "state {}, activations {}, workspace {}, loss targets {}; as the loss's backward starts {}; at the "
        "optimizer "
        "step {})\n",
        format_bytes(predicted_peak), format_bytes(backward_peak), format_bytes(mem.parameters),
        format_bytes(mem.gradients), format_bytes(mem.optimizer_state), format_bytes(mem.activations),
        format_bytes(mem.workspace), format_bytes(loss_bytes), format_bytes(loss_peak),
        format_bytes(update_peak));
  } else {
    fmt::print(out, "  predicted memory: {:>10}  (parameters {}, activations {}, workspace {})\n",
               format_bytes(predicted_peak), format_bytes(mem.parameters), format_bytes(mem.activations),
               format_bytes(mem.workspace));
  }
  fmt::print(out, "  predicted energy: {:>10.4f} J   ({}: {})\n", energy.joules.value(),
             energy_source_name(energy.source), energy.note);
  if (measured) {
    fmt::print(out, "  measured step:    {:>10.3f} ms  (median of {}), error {:+.1f}%\n",
               to_milliseconds(measured->median), measured->repeats,
               error_pct(predicted.value(), measured->median.value()));
    if (measured->peak_measured) {
      fmt::print(out, "  measured memory:  {:>10}  (peak live CPU tensor bytes), error {:+.1f}%\n",
                 format_bytes(measured->peak),
                 error_pct(static_cast<double>(predicted_peak.value()),
                           static_cast<double>(measured->peak.value())));
    }
    if (measured_joules)
      fmt::print(out, "  measured energy:  {:>10.4f} J   (nvml)\n", measured_joules->value());
  }
  if (!args.json.empty()) {
    Json j;
    j["model"] = args.model.model;
    j["device"] = id.to_string();
    j["device_name"] = dev.spec.name;
    j["threads"] = dev.threads;
    j["blas_threads"] = blas;
    j["train"] = args.train;
    if (training) {
      j["optimizer"] = optimizer_name(optimizer);
      j["loss"] = loss_kind_name(training->loss_kind());
    }
    j["cost"] = args.cost;
    j["predicted_ms"] = to_milliseconds(predicted);
    j["predicted_forward_ms"] = to_milliseconds(total.forward);
    j["predicted_backward_ms"] = args.train ? to_milliseconds(total.backward) : 0.0;
    j["predicted_update_ms"] = to_milliseconds(update);
    j["predicted_executor_overhead_ms"] = to_milliseconds(executor_overhead);
    j["predicted_peak_bytes"] = predicted_peak.value();
    j["predicted_memory"] = {{"parameters", mem.parameters.value()},
                             {"gradients", mem.gradients.value()},
                             {"optimizer_state", mem.optimizer_state.value()},
                             {"activations", mem.activations.value()},
                             {"workspace", mem.workspace.value()},
                             {"loss_targets", loss_bytes.value()},
                             {"loss_backward_peak", loss_peak.value()},
                             {"optimizer_step_peak", update_peak.value()}};
    j["predicted_joules"] = energy.joules.value();
    j["energy_source"] = energy_source_name(energy.source);
    j["energy_note"] = energy.note;
    j["profile"] = {{"path", cached.path}, {"date", cached.profile.date}, {"quick", cached.profile.quick}};
    if (measured) {
      j["measured_ms"] = to_milliseconds(measured->median);
      j["measured_min_ms"] = to_milliseconds(measured->min);
      j["measured_repeats"] = measured->repeats;
      j["measured_peak_bytes"] = measured->peak_measured ? Json(measured->peak.value()) : Json(nullptr);
      j["time_error_pct"] = error_pct(predicted.value(), measured->median.value());
      j["memory_error_pct"] = measured->peak_measured
                                  ? Json(error_pct(static_cast<double>(predicted_peak.value()),
                                                   static_cast<double>(measured->peak.value())))
                                  : Json(nullptr);
      j["measured_joules"] = measured_joules ? Json(measured_joules->value()) : Json(nullptr);
      j["measured_energy_source"] = measured_joules ? "nvml" : "none";
    }
    write_json_file(args.json, j);
  }
}

}  // namespace

Command register_estimate(CLI::App& app) {
  auto args = std::make_shared<EstimateArgs>();
  CLI::App* cmd = app.add_subcommand("estimate", "predict step time, peak memory and energy on one device");
  add_model_args(*cmd, args->model);
  cmd->add_option("--device", args->device, "cpu, cpu:N, cpu:A-B or cuda:N")->required();
  cmd->add_flag("--train", args->train,
                "a training step (forward, loss, backward, optimizer update) instead of inference");
  cmd->add_option("--optimizer", args->optimizer, "training: sgd (default), sgd_momentum, adam or adamw");
  cmd->add_option("--loss", args->loss,
                  "training: auto (default: as partita run picks it), cross_entropy, mse or next_token");
  cmd->add_option("--cost", args->cost, "roofline (machine profile) or profiled (per-op replay)");
  cmd->add_flag("--measure", args->measure, "also run the real step and report prediction errors");
  cmd->add_option("--json", args->json, "write results as JSON (- for stdout)");
  return Command{cmd, [args] { run_estimate(*args); }};
}

}  // namespace partita::app

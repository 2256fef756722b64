#include "plan_runner.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/core/log.h"
#include "partita/hardware/cpu_info.h"
#include "partita/runtime/stage_metrics.h"
#include "partita/torch_bridge/timing.h"

namespace partita::app {

RunReport run_plan(LoadedModel& model, const Plan& plan, const std::vector<InputSpec>& specs,
                   const RunOptions& options) {
  PARTITA_CHECK(options.steps >= 1, "--steps must be at least 1, got ", options.steps);
  PARTITA_CHECK(!specs.empty() && specs[0].shape[0] == plan.global_batch,
                "the plan is for a global batch of ", plan.global_batch, " but --input has batch ",
                specs.empty() ? 0 : specs[0].shape[0], "; use the same input spec as for planning");
  // A stage that cannot fit is refused before anything runs. Host devices share the machine's memory.
  const CpuInfo cpu = discover_cpu();
  for (const auto& d : plan.prediction.devices) {
    if (d.device.rfind("cpu", 0) != 0) continue;
    PARTITA_CHECK(d.peak_memory <= cpu.memory_available, "plan needs ", format_bytes(d.peak_memory), " on ",
                  d.device, " but this machine has ", format_bytes(cpu.memory_available),
                  " available; plan again with --memory-limit or a smaller batch");
  }
  EngineOptions engine_options;
  engine_options.learning_rate = options.learning_rate;
  engine_options.loss = options.loss;
  engine_options.blas = options.blas;
  engine_options.local_replica = options.local_replica;
  engine_options.reducer = options.reducer;
  Engine engine(model, plan, engine_options);
  StageMetrics metrics;
  ChromeTraceObserver trace;
  engine.add_observer(&metrics);

  const bool training = plan.mode == Mode::kTraining;
  StepInputs batch;
  batch.inputs = make_inputs(specs, /*seed=*/11);
  if (training) batch.targets = engine.make_targets(batch.inputs, /*seed=*/12);
  RunReport report;
  const int total = options.warmup + options.steps;
  for (int i = 0; i < total; ++i) {
    if (i == options.warmup) {  // count and trace only the steps after warm-up
      metrics.reset();
      if (options.record_trace) engine.add_observer(&trace);
    }
    const auto t0 = std::chrono::steady_clock::now();
    const StepResult r = engine.step(batch);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= options.warmup) {
      report.step_ms.push_back(ms);
      if (training) report.losses.push_back(r.loss);
    }
    log_info(fmt::format("step {}/{}: {:.1f} ms{}{}", i + 1, total, ms,
                         i < options.warmup ? " (warm-up)" : "",
                         training ? fmt::format(", loss {:.5f}", r.loss) : ""));
  }
  report.median_ms = median_of(report.step_ms);
  const auto [lo, hi] = std::minmax_element(report.step_ms.begin(), report.step_ms.end());
  report.spread_ms = *hi - *lo;
  report.samples_per_second = report.median_ms > 0 ? plan.global_batch * 1000.0 / report.median_ms : 0;
  double total_ms = 0;
  for (double v : report.step_ms) total_ms += v;
  for (const auto& w : metrics.workers()) {
    WorkerReport wr;
    wr.device = w.device;
    wr.stage = w.stage;
    wr.busy_ms_per_step = to_milliseconds(w.busy) / options.steps;
    wr.utilization = total_ms > 0 ? to_milliseconds(w.busy) / total_ms : 0;
    for (const auto& d : plan.prediction.devices) {
      if (d.device == w.device) wr.predicted_busy_ms = to_milliseconds(d.busy);
    }
    report.workers.push_back(wr);
  }
  if (options.record_trace) report.trace = trace.to_json();
  return report;
}

Json run_report_to_json(const RunReport& r) {
  Json j;
  j["step_ms"] = r.median_ms;
  j["step_ms_all"] = r.step_ms;
  j["spread_ms"] = r.spread_ms;
  j["samples_per_second"] = r.samples_per_second;
  if (!r.losses.empty()) j["losses"] = r.losses;
  Json workers = Json::array();
  for (const auto& w : r.workers) {
    workers.push_back({{"device", w.device},
                       {"stage", w.stage},
                       {"busy_ms_per_step", w.busy_ms_per_step},
                       {"utilization", w.utilization},
                       {"predicted_busy_ms", w.predicted_busy_ms}});
  }
  j["workers"] = workers;
  return j;
}

}  // namespace partita::app

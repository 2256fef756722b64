#pragma once
// Runs a plan with the engine for a number of steps and reports what happened: the shared core of
// `partita run` and `partita optimize`.
#include <string>
#include <vector>

#include "partita/core/json_io.h"
#include "partita/runtime/chrome_trace.h"
#include "partita/runtime/engine.h"

namespace partita::app {

struct RunOptions {
  int steps = 10;
  int warmup = 2;  // steps run first and not counted
  double learning_rate = 0.01;
  LossKind loss = LossKind::kAuto;
  bool record_trace = false;  // keep a Chrome trace of the counted steps
  BlasThreads blas = BlasThreads::kAuto;
  int local_replica = -1;              // multi-process data parallel: the replica this process runs
  GradientReducer* reducer = nullptr;  // and what combines it with the other processes (EngineOptions)
};

struct WorkerReport {
  std::string device;
  int stage = 0;
  double busy_ms_per_step = 0;
  double utilization = 0;        // busy / step time
  double predicted_busy_ms = 0;  // the plan's prediction for this device (0 when absent)
};

struct RunReport {
  std::vector<double> step_ms;  // every counted step
  double median_ms = 0;
  double spread_ms = 0;        // max - min of counted steps
  std::vector<double> losses;  // per counted step (training)
  std::vector<WorkerReport> workers;
  double samples_per_second = 0;
  Json trace;  // when record_trace
};

RunReport run_plan(LoadedModel& model, const Plan& plan, const std::vector<InputSpec>& specs,
                   const RunOptions& options);
Json run_report_to_json(const RunReport& report);

}  // namespace partita::app

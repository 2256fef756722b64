#include "launched_run.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <utility>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/core/subprocess.h"
#include "partita/search/plan_json.h"
#include "partita/search/process_layout.h"
#include "run_energy.h"

namespace partita::app {

namespace fs = std::filesystem;

int launch_processes(const Plan& plan) {
  const std::vector<int> rank = launch_process_of_devices(plan);
  return rank.empty() ? 1 : *std::max_element(rank.begin(), rank.end()) + 1;
}

namespace {

// The line that says what failed: the first error line a rank or the launcher printed, else the last line.
std::string error_line(const std::string& log_path) {
  std::ifstream in(log_path);
  std::string line, last, error;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    last = line;
    if (error.empty() && line.find("error:") != std::string::npos) error = line;
  }
  if (!error.empty()) return error;
  return last.empty() ? std::string("no output") : last;
}

RunReport report_from_json(const Json& j) {
  RunReport r;
  r.step_ms = j.at("step_ms_all").get<std::vector<double>>();
  r.median_ms = j.at("step_ms").get<double>();
  r.spread_ms = j.value("spread_ms", 0.0);
  r.samples_per_second = j.value("samples_per_second", 0.0);
  if (j.contains("losses")) r.losses = j["losses"].get<std::vector<double>>();
  r.loss = j.value("loss", std::string());
  for (const auto& w : j.at("workers")) {
    WorkerReport worker;
    worker.device = w.at("device").get<std::string>();
    worker.stage = w.at("stage").get<int>();
    worker.busy_ms_per_step = w.at("busy_ms_per_step").get<double>();
    worker.utilization = w.at("utilization").get<double>();
    worker.predicted_busy_ms = w.value("predicted_busy_ms", 0.0);
    r.workers.push_back(worker);
  }
  if (j.contains("energy")) r.energy = energy_from_json(j["energy"]);
  return r;
}

}  // namespace

ScratchFolder::ScratchFolder(const std::string& prefix) {
  // TMPDIR as given (std::filesystem::temp_directory_path throws its own message when it is missing).
  const char* tmpdir = std::getenv("TMPDIR");
  std::string pattern =
      (fs::path(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") / (prefix + "-XXXXXX")).string();
  PARTITA_CHECK(mkdtemp(pattern.data()) != nullptr, "cannot make a scratch folder ", pattern, ": ",
                std::strerror(errno), "; set TMPDIR to a writable folder");
  path_ = pattern;
}

ScratchFolder::~ScratchFolder() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

LaunchedRun run_launched(const LaunchedRunRequest& request) {
  const int processes = launch_processes(request.plan);
  PARTITA_ASSERT(processes >= 2, "a launched run needs a plan of two processes or more, got ", processes);
  const fs::path work(request.work_dir);
  const std::string plan_path = (work / "plan.json").string(), json_path = (work / "run.json").string(),
                    trace_path = (work / "trace.json").string(), log_path = (work / "stderr.log").string();
  write_json_file(plan_path, plan_to_json(request.plan));
  fs::remove(json_path);
  fs::remove(trace_path);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  // `partita launch -n N -- partita -q run MODEL --plan P --steps S --warmup W --json J --input ...`
  std::vector<std::string> argv = {self, "launch", "-n", std::to_string(processes), "--"};
  const auto add = [&argv](std::initializer_list<std::string> more) { argv.insert(argv.end(), more); };
  add({self, "-q", "run", request.model, "--plan", plan_path});
  add({"--steps", std::to_string(request.steps), "--warmup", std::to_string(request.warmup)});
  add({"--json", json_path});
  for (const auto& spec : request.inputs) add({"--input", spec});
  if (request.train) add({"--train"});
  if (!request.loss.empty()) add({"--loss", request.loss});
  if (request.record_trace) add({"--trace", trace_path});
  // Stopped by the timeout or the request: SIGTERM, which the launcher passes on, then SIGKILL 10 s later.
  const ChildEnd end = wait_for_child(spawn_quiet(argv, log_path, "for a launched run"), request.timeout,
                                      request.stop_requested);
  PARTITA_CHECK(!end.stopped, "interrupted: the launched run of ", processes, " processes was stopped");
  PARTITA_CHECK(!end.timed_out, "the launched run of ", processes, " processes ran past ",
                request.timeout.value(), " s and was stopped; its last line: ", error_line(log_path));
  PARTITA_CHECK(end.status == 0, "the launched run of ", processes,
                " processes failed: ", error_line(log_path));
  LaunchedRun out;
  out.processes = processes;
  const Json j = read_json_file(json_path);
  out.report = report_from_json(j);
  int64_t together = 0;
  for (const auto& peak : j.at("measured_host_peak_bytes_per_rank")) together += peak.get<int64_t>();
  out.host_peak_together = Bytes(together);
  if (request.record_trace) out.report.trace = read_json_file(trace_path);
  return out;
}

}  // namespace partita::app

#pragma once
// Running a plan as the processes of `partita launch`, from inside partita: `optimize --processes launch`
// measures its launched candidates this way. This binary starts `partita launch -n N -- partita -q run MODEL
// --plan P ... --json J` as a child process, waits for it and reads back what rank 0 wrote (step times,
// every rank's workers, energy, host peaks and, when asked, the trace). The job's stdout goes nowhere and its
// stderr into the work folder, whose last error line a failure names. One job at a time; not thread-safe.
#include <atomic>
#include <string>
#include <vector>

#include "partita/core/units.h"
#include "partita/search/plan.h"
#include "plan_runner.h"

namespace partita::app {

// How many processes `partita launch` runs `plan` with (search/process_layout.h): one per stage of a
// pipeline, one per device of a one-stage plan. 1 for a plan on one device, which has nothing to put in other
// processes.
int launch_processes(const Plan& plan);

struct LaunchedRunRequest {
  std::string model;                // the model file
  std::vector<std::string> inputs;  // the --input specs, as given
  Plan plan;                        // written into work_dir
  int steps = 5;
  int warmup = 3;
  bool train = false;
  std::string loss;  // --loss of the run; empty: the plan's
  bool record_trace = false;
  std::string work_dir;  // an existing folder for the plan, the results and the job's stderr
  // The job is stopped (SIGTERM, then SIGKILL) when it runs longer: a hung rank must not hang the caller.
  Seconds timeout{600};
  // When set and true (StopOnSignal: Ctrl-C or SIGTERM), the job is stopped the same way and run_launched
  // throws partita::Error saying so.
  const std::atomic<bool>* stop_requested = nullptr;
};

struct LaunchedRun {
  RunReport report;  // the job's step times, every rank's workers and devices' energy, the trace if asked
  Bytes host_peak_together{0};  // the ranks' host peaks (CPU tensors) added
  int processes = 0;
};

// A new folder under the temporary directory (TMPDIR, else /tmp), removed with what it holds when this goes.
class ScratchFolder {
 public:
  explicit ScratchFolder(const std::string& prefix);
  ~ScratchFolder();
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs the job to its end. Throws partita::Error with the job's error line when it fails or times out.
LaunchedRun run_launched(const LaunchedRunRequest& request);

}  // namespace partita::app

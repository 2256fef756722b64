#pragma once
// Energy of a run's counted steps, per device of the plan that ran in this process: measured where the
// machine can (a GPU's NVML energy counter; RAPL's package counters for the CPU devices together, which
// count the whole packages: idle cores and other processes too), else estimated from the device's measured
// busy time with cost/energy.h's model (TDP while busy, idle power for the rest of the step; TDP is an upper
// bound, and the figures come from the hardware database or a per-core guess, as `partita devices` shows).
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "partita/core/json_io.h"
#include "partita/cost/energy.h"
#include "partita/hardware/device.h"
#include "partita/hardware/nvml.h"
#include "partita/hardware/rapl.h"

namespace partita::app {

struct DeviceEnergy {
  std::string device;  // a device id, or "cpu packages of HOST" for RAPL (every CPU device of the plan)
  double joules_per_step = 0;
  EnergySource source = EnergySource::kEstimated;
  // Estimates only: the power figures used (W).
  double busy_watts = 0;
  double idle_watts = 0;
};

class RunEnergyMeter {
 public:
  // `devices`: the plan's devices this process runs (ids as in the plan).
  explicit RunEnergyMeter(const std::vector<std::string>& devices);
  // At the start of the first counted step.
  void start();
  // After the last counted step: `steps` counted, `step_ms` their median, `busy_ms` each device's busy time
  // per step (devices without a figure count as idle). `blas_threads`: OpenBLAS's pool during the run; when
  // it is larger than a CPU device's core count, the device's matmuls ran on that many cores, and the
  // estimate charges that many cores' TDP while the device is busy (an upper bound, as TDP is).
  // `whole_machine`: this process is the whole job on this machine; without RAPL, the CPU cores no device
  // of the plan covers are then counted at idle power for the step (an entry of their own), so a plan on
  // fewer cores is compared with the machine's, not with a machine that switched the other cores off.
  std::vector<DeviceEnergy> finish(int steps, double step_ms,
                                   const std::vector<std::pair<std::string, double>>& busy_ms,
                                   int blas_threads = 1, bool whole_machine = false) const;

 private:
  std::vector<std::string> devices_;
  std::vector<DeviceSpec> specs_;  // power figures, per device
  DeviceSpec whole_cpu_;           // the machine's CPU (its cores and TDP)
  Nvml nvml_;
  Rapl rapl_;
  std::vector<Joules> rapl_start_;
  std::vector<std::optional<Joules>> nvml_start_;  // per device; only for GPUs NVML measures
};

// {"joules_per_step": total, "devices": [{"device", "joules_per_step", "source", estimates: "busy_watts",
// "idle_watts"}]}, and back.
Json energy_to_json(const std::vector<DeviceEnergy>& energy);
std::vector<DeviceEnergy> energy_from_json(const Json& j);

}  // namespace partita::app

#pragma once
// Energy cost model: a device draws TDP while busy and idle_power otherwise.
// Busy power = TDP is an upper-bound assumption: real kernels draw 50-100 % of TDP (an H200 measured ~410 W
// of 700 W during large matmuls), so estimated energy is pessimistic. Measured energy (NVML, RAPL) wins where
// available; EnergyEstimate says which it is. Pure and thread-safe.
#include <string>
#include <string_view>

#include "partita/core/units.h"
#include "partita/hardware/device.h"

namespace partita {

enum class EnergySource { kMeasuredNvml, kMeasuredRapl, kEstimated };

// "nvml", "rapl", "estimated".
std::string_view energy_source_name(EnergySource source);

struct EnergyEstimate {
  Joules joules{0};
  EnergySource source = EnergySource::kEstimated;
  std::string note;  // how it was obtained ("TDP x busy + idle x idle; TDP is an upper bound")
};

// tdp * busy + idle_power * idle, in joules. Throws partita::Error for negative times.
Joules device_energy(const DeviceSpec& spec, Seconds busy, Seconds idle);

// Same, wrapped as an estimate with a note naming the assumption.
EnergyEstimate estimate_device_energy(const DeviceSpec& spec, Seconds busy, Seconds idle);

}  // namespace partita

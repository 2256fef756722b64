#include "partita/cost/energy.h"

#include "partita/core/error.h"

namespace partita {

std::string_view energy_source_name(EnergySource source) {
  switch (source) {
    case EnergySource::kMeasuredNvml:
      return "nvml";
    case EnergySource::kMeasuredRapl:
      return "rapl";
    case EnergySource::kEstimated:
      break;
  }
  return "estimated";
}

Joules device_energy(const DeviceSpec& spec, Seconds busy, Seconds idle) {
  PARTITA_CHECK(busy.value() >= 0 && idle.value() >= 0, "device_energy: negative time (busy ", busy.value(),
                " s, idle ", idle.value(), " s) for device '", spec.name, "'");
  return spec.tdp * busy + spec.idle_power * idle;
}

EnergyEstimate estimate_device_energy(const DeviceSpec& spec, Seconds busy, Seconds idle) {
  return EnergyEstimate{
      device_energy(spec, busy, idle), EnergySource::kEstimated,
      "model: TDP x busy time + idle power x idle time (TDP is an upper bound on busy power)"};
}

}  // namespace partita

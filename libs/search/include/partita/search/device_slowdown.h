#pragma once
// What-if planning for a device that runs slower than its cost table says (shared with other work, thermally
// limited, or measured slower by the runtime monitor): the device gets its own cost table row, the row of its
// spec with every node time multiplied by the factor, and a spec renamed "<name> (x<factor> slower)" whose
// peak FLOP/s and bandwidth are divided by the factor. Other devices of the same spec keep the old row.
// Assumption: a slowdown stretches every op alike (a share of the device's time taken by something else).
#include <map>
#include <string>

#include "partita/cost/compute.h"
#include "partita/hardware/device.h"

namespace partita {

// Applies `factor` (> 0; 1 leaves the device alone, < 1 means faster) to device `device_id` of `cluster`.
// Throws partita::Error when the device is not in the cluster, the factor is not positive and finite, or the
// table has no row for the device's spec.
void slow_down_device(Cluster& cluster, CostTable& table, const std::string& device_id, double factor);

// Parses "cpu:0:2.5" (DEVICE:FACTOR; the device id may itself contain ':') into {device, factor}. Throws
// partita::Error naming the text when it has no factor or the factor is not a positive number.
std::pair<std::string, double> parse_device_slowdown(const std::string& text);

// What-if planning for a power-capped GPU (`partita run --power-cap` applies a cap; this predicts one). A
// labelled model, not a measurement (a profile of the capped device would win): dynamic power grows with the
// cube of the clock, P = idle + (TDP - idle) (f / f_max)^3 (voltage scales with frequency), so a cap C leaves
// the clock at f / f_max = ((C - idle) / (TDP - idle))^(1/3), every op takes f_max / f times as long (an
// upper bound for memory-bound ops, whose memory clock a cap hardly lowers) and a busy device draws C instead
// of TDP. A cap at or above TDP changes nothing.
struct PowerCapEffect {
  double clock_ratio = 1.0;  // f / f_max, in (0, 1]
  Watts busy_power{0};       // what the energy model charges while busy: min(cap, TDP)
};
// Throws partita::Error when the spec has no TDP or idle power above 0, or the cap is not above idle power.
PowerCapEffect power_cap_effect(const DeviceSpec& spec, Watts cap);

// Applies the cap to GPU `device_id` of `cluster`: its own cost table row stretched by 1 / clock_ratio, its
// spec renamed "<name> (capped at C W)" with peak FLOP/s and bandwidth scaled and TDP = C. Throws
// partita::Error for a device that is not in the cluster or not a GPU (a CPU's RAPL cap is per package, not
// per core group: not modelled), and as power_cap_effect does.
void cap_device_power(Cluster& cluster, CostTable& table, const std::string& device_id, Watts cap);

// Parses "cuda:0:250" (DEVICE:WATTS, an optional "W" suffix) into {device, watts}. Throws partita::Error
// naming the text when it has no wattage or the wattage is not a positive number.
std::pair<std::string, double> parse_device_power_cap(const std::string& text);

}  // namespace partita

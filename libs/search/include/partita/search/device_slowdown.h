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

}  // namespace partita

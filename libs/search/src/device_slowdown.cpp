#include "partita/search/device_slowdown.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "partita/core/error.h"

namespace partita {

void slow_down_device(Cluster& cluster, CostTable& table, const std::string& device_id, double factor) {
  PARTITA_CHECK(std::isfinite(factor) && factor > 0, "slowdown factor for ", device_id,
                " must be a positive number, got ", factor);
  const int index = cluster.index_of(device_id);
  PARTITA_CHECK(index >= 0, "cannot slow down device '", device_id, "': the cluster has no such device");
  DeviceSpec& spec = cluster.devices[static_cast<size_t>(index)].spec;
  const auto row = std::find(table.spec_names.begin(), table.spec_names.end(), spec.name);
  PARTITA_CHECK(row != table.spec_names.end(), "cost table has no row for '", spec.name, "' (device ",
                device_id, ")");
  if (factor == 1.0) return;
  std::vector<NodeTimes> times = table.times[static_cast<size_t>(row - table.spec_names.begin())];
  for (NodeTimes& t : times) {
    t.forward = t.forward * factor;
    t.backward = t.backward * factor;
  }
  spec.name = fmt::format("{} (x{:.3g} slower)", spec.name, factor);
  for (auto& [dtype, flops] : spec.peak_flops) flops = FlopsPerSecond(flops.value() / factor);
  spec.memory_bandwidth = BytesPerSecond(spec.memory_bandwidth.value() / factor);
  table.spec_names.push_back(spec.name);
  table.times.push_back(std::move(times));
}

std::pair<std::string, double> parse_device_slowdown(const std::string& text) {
  const size_t colon = text.rfind(':');
  PARTITA_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < text.size(), "device slowdown '", text,
                "' must be DEVICE:FACTOR, e.g. cpu:0:2");
  const std::string number = text.substr(colon + 1);
  double factor = 0;
  size_t used = 0;
  try {
    factor = std::stod(number, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  PARTITA_CHECK(used == number.size() && std::isfinite(factor) && factor > 0, "device slowdown '", text,
                "' has factor '", number, "'; it must be a positive number, e.g. cpu:0:2");
  return {text.substr(0, colon), factor};
}

}  // namespace partita

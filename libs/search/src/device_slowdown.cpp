#include "partita/search/device_slowdown.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "partita/core/error.h"

namespace partita {

namespace {

// Gives the device a spec and cost table row of its own, renamed `name`, every time multiplied by `factor`.
void stretch_device(Cluster& cluster, CostTable& table, int index, double factor, const std::string& name) {
  DeviceSpec& spec = cluster.devices[static_cast<size_t>(index)].spec;
  const auto row = std::find(table.spec_names.begin(), table.spec_names.end(), spec.name);
  PARTITA_CHECK(row != table.spec_names.end(), "cost table has no row for '", spec.name, "' (device ",
                cluster.devices[static_cast<size_t>(index)].id, ")");
  std::vector<NodeTimes> times = table.times[static_cast<size_t>(row - table.spec_names.begin())];
  for (NodeTimes& t : times) {
    t.forward = t.forward * factor;
    t.backward = t.backward * factor;
    t.forward_fixed = t.forward_fixed * factor;
    t.backward_fixed = t.backward_fixed * factor;
  }
  spec.name = name;
  for (auto& [dtype, flops] : spec.peak_flops) flops = FlopsPerSecond(flops.value() / factor);
  spec.memory_bandwidth = BytesPerSecond(spec.memory_bandwidth.value() / factor);
  table.spec_names.push_back(spec.name);
  table.times.push_back(std::move(times));
}

// "DEVICE:NUMBER" with the device id possibly containing ':'; `what` and `example` name it in errors.
std::pair<std::string, double> parse_device_number(const std::string& text, const char* what,
                                                   const char* example, std::string_view suffix = {}) {
  const size_t colon = text.rfind(':');
  PARTITA_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < text.size(), what, " '", text,
                "' must be ", example);
  std::string number = text.substr(colon + 1);
  if (!suffix.empty() && number.size() > suffix.size() && number.ends_with(suffix)) {
    number.resize(number.size() - suffix.size());
  }
  double value = 0;
  size_t used = 0;
  try {
    value = std::stod(number, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  PARTITA_CHECK(used == number.size() && std::isfinite(value) && value > 0, what, " '", text, "' has '",
                text.substr(colon + 1), "' after the device; it must be a positive number: ", example);
  return {text.substr(0, colon), value};
}

}  // namespace

void slow_down_device(Cluster& cluster, CostTable& table, const std::string& device_id, double factor) {
  PARTITA_CHECK(std::isfinite(factor) && factor > 0, "slowdown factor for ", device_id,
                " must be a positive number, got ", factor);
  const int index = cluster.index_of(device_id);
  PARTITA_CHECK(index >= 0, "cannot slow down device '", device_id, "': the cluster has no such device");
  const DeviceSpec& spec = cluster.devices[static_cast<size_t>(index)].spec;
  PARTITA_CHECK(
      std::find(table.spec_names.begin(), table.spec_names.end(), spec.name) != table.spec_names.end(),
      "cost table has no row for '", spec.name, "' (device ", device_id, ")");
  if (factor == 1.0) return;
  stretch_device(cluster, table, index, factor, fmt::format("{} (x{:.3g} slower)", spec.name, factor));
}

PowerCapEffect power_cap_effect(const DeviceSpec& spec, Watts cap) {
  PARTITA_CHECK(spec.tdp.value() > 0 && spec.idle_power.value() > 0 && spec.tdp > spec.idle_power, "'",
                spec.name, "' has no TDP and idle power to model a power cap with (TDP ", spec.tdp.value(),
                " W, idle ", spec.idle_power.value(),
                " W); describe them in the cluster or hardware database");
  PARTITA_CHECK(std::isfinite(cap.value()) && cap > spec.idle_power, "a power cap of ", cap.value(),
                " W on '", spec.name, "' is not above its idle power (", spec.idle_power.value(),
                " W); give a cap between that and its TDP (", spec.tdp.value(), " W)");
  PowerCapEffect effect;
  if (cap >= spec.tdp) {
    effect.busy_power = spec.tdp;
    return effect;
  }
  effect.clock_ratio = std::cbrt((cap - spec.idle_power).value() / (spec.tdp - spec.idle_power).value());
  effect.busy_power = cap;
  return effect;
}

void cap_device_power(Cluster& cluster, CostTable& table, const std::string& device_id, Watts cap) {
  const int index = cluster.index_of(device_id);
  PARTITA_CHECK(index >= 0, "cannot cap the power of device '", device_id,
                "': the cluster has no such device");
  const DeviceSpec& spec = cluster.devices[static_cast<size_t>(index)].spec;
  PARTITA_CHECK(spec.kind == DeviceKind::kCuda, "power caps are modelled for GPUs only; '", device_id,
                "' is a CPU device (RAPL caps a whole package, not a core group); plan without --power-cap ",
                device_id, " or use --device-slowdown for a guess");
  const PowerCapEffect effect = power_cap_effect(spec, cap);
  if (effect.clock_ratio >= 1.0) return;
  stretch_device(cluster, table, index, 1.0 / effect.clock_ratio,
                 fmt::format("{} (capped at {:.4g} W)", spec.name, cap.value()));
  cluster.devices[static_cast<size_t>(index)].spec.tdp = effect.busy_power;
}

std::pair<std::string, double> parse_device_slowdown(const std::string& text) {
  return parse_device_number(text, "device slowdown", "DEVICE:FACTOR, e.g. cpu:0:2");
}

std::pair<std::string, double> parse_device_power_cap(const std::string& text) {
  auto parsed = parse_device_number(text, "power cap", "DEVICE:WATTS, e.g. cuda:0:250", "W");
  // "cuda:1" alone reads as device "cuda" at 1 W: the watts are missing.
  PARTITA_CHECK(parsed.first != "cuda" && parsed.first != "gpu", "power cap '", text,
                "' must be DEVICE:WATTS, e.g. cuda:0:250 (the device id, then the watts)");
  return parsed;
}

}  // namespace partita

#include "partita/hardware/power_cap.h"

#include <cstdio>
#include <exception>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/hardware/device.h"

namespace partita {

PowerCapRequest parse_power_cap(const std::string& text) {
  const size_t colon = text.rfind(':');
  const auto bad = [&](const std::string& why) {
    PARTITA_FAIL("--power-cap '", text, "': ", why, "; write DEVICE:WATTS, e.g. cuda:0:250 or cpu:95");
  };
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) bad("no DEVICE:WATTS");
  PowerCapRequest out;
  out.device = text.substr(0, colon);
  size_t used = 0;
  double watts = 0;
  try {
    watts = std::stod(text.substr(colon + 1), &used);
  } catch (const std::exception&) {
    bad("'" + text.substr(colon + 1) + "' is not a number of watts");
  }
  if (used != text.size() - colon - 1 || !(watts > 0)) bad("the watts must be a positive number");
  out.watts = Watts(watts);
  const DeviceId id = parse_device_id(out.device);
  const bool whole_cpu = id.kind == DeviceKind::kCpu && id.index < 0;
  if (!whole_cpu && id.kind != DeviceKind::kCuda)
    bad("only cuda:N and cpu (every package) can be capped, not " + out.device);
  if (id.kind == DeviceKind::kCuda && id.index < 0) bad("name the GPU: cuda:N");
  return out;
}

PowerCaps::PowerCaps(const std::vector<PowerCapRequest>& caps, const Nvml& nvml, const Rapl& rapl)
    : nvml_(nvml), rapl_(rapl) {
  try {
    for (const PowerCapRequest& cap : caps) {
      const DeviceId id = parse_device_id(cap.device);
      if (id.kind == DeviceKind::kCuda) {
        PARTITA_CHECK(nvml.available(), "cannot cap the power of ", cap.device, ": ", nvml.error());
        PARTITA_CHECK(id.index < nvml.device_count(), "cannot cap the power of ", cap.device, ": NVML sees ",
                      nvml.device_count(), " GPU(s)");
        if (const auto range = nvml.power_range(id.index)) {
          PARTITA_CHECK(cap.watts >= range->min && cap.watts <= range->max, "cannot cap ", cap.device, " at ",
                        cap.watts.value(), " W: it accepts ", range->min.value(), " to ", range->max.value(),
                        " W");
        }
        const Watts was = nvml.device_info(id.index).power_limit;
        PARTITA_CHECK(was.value() > 0, "cannot cap ", cap.device,
                      ": NVML does not say its current limit, so it "
                      "could not be restored");
        nvml.set_power_limit(id.index, cap.watts);
        previous_.push_back(Previous{true, id.index, was});
        applied_.push_back(
            fmt::format("{} at {:g} W (was {:g} W)", cap.device, cap.watts.value(), was.value()));
        continue;
      }
      PARTITA_CHECK(rapl.available(), "cannot cap the power of the CPU: ", rapl.error());
      const auto names = rapl.packages();
      for (size_t k = 0; k < names.size(); ++k) {
        const auto was = rapl.power_limit(k);
        PARTITA_CHECK(was.has_value(), "cannot cap ", names[k], ": it has no constraint_0_power_limit_uw");
        if (const auto most = rapl.max_power(k)) {
          PARTITA_CHECK(cap.watts <= *most, "cannot cap ", names[k], " at ", cap.watts.value(),
                        " W: its most is ", most->value(), " W");
        }
        rapl.set_power_limit(k, cap.watts);
        previous_.push_back(Previous{false, static_cast<int>(k), *was});
        applied_.push_back(
            fmt::format("cpu {} at {:g} W (was {:g} W)", names[k], cap.watts.value(), was->value()));
      }
    }
  } catch (...) {
    restore();
    throw;
  }
}

PowerCaps::~PowerCaps() { restore(); }

void PowerCaps::restore() noexcept {
  for (auto it = previous_.rbegin(); it != previous_.rend(); ++it) {
    try {
      if (it->gpu) {
        nvml_.set_power_limit(it->index, it->watts);
      } else {
        rapl_.set_power_limit(static_cast<size_t>(it->index), it->watts);
      }
    } catch (const std::exception& e) {  // a destructor must not throw: say it, so someone restores it
      std::fprintf(stderr, "partita: could not restore a power limit (%g W): %s\n", it->watts.value(),
                   e.what());
    }
  }
  previous_.clear();
}

}  // namespace partita

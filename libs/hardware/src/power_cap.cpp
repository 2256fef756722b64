#include "partita/hardware/power_cap.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/hardware/device.h"
#include "partita/hardware/machine_profile.h"

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

PowerCaps::PowerCaps(const std::vector<PowerCapRequest>& caps, const Nvml& nvml, const Rapl& rapl,
                     std::string journal_dir)
    : nvml_(nvml), rapl_(rapl) {
  if (!journal_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(journal_dir, ec);
    PARTITA_CHECK(!ec, "cannot create the power cap journal directory ", journal_dir, ": ", ec.message());
    journal_ = (std::filesystem::path(journal_dir) / (std::to_string(::getpid()) + ".json")).string();
  }
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
        previous_.push_back(Previous{true, id.index, was, cap.watts, cap.device});
        write_journal();  // before the change: a kill right after it still finds what to put back
        nvml.set_power_limit(id.index, cap.watts);
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
        previous_.push_back(Previous{false, static_cast<int>(k), *was, cap.watts, "cpu " + names[k]});
        write_journal();
        rapl.set_power_limit(k, cap.watts);
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

void PowerCaps::write_journal() const {
  if (journal_.empty()) return;
  Json limits = Json::array();
  for (const Previous& p : previous_) {
    limits.push_back({{"device", p.label},
                      {"gpu", p.gpu},
                      {"index", p.index},
                      {"was_w", p.watts.value()},
                      {"cap_w", p.cap.value()}});
  }
  write_json_file(journal_, Json{{"format", "partita-power-caps"},
                                 {"pid", ::getpid()},
                                 {"powercap_root", rapl_.root()},
                                 {"limits", limits}});
}

void PowerCaps::restore() noexcept {
  bool all_back = true;
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
      all_back = false;
    }
  }
  previous_.clear();
  // A limit not put back keeps its journal, so that a later run tries again.
  if (!journal_.empty() && all_back) {
    std::error_code ec;
    std::filesystem::remove(journal_, ec);
  }
}

std::string default_power_cap_journal_dir() { return cache_dir() + "/power-caps"; }

namespace {

namespace fs = std::filesystem;

// Journals of processes that no longer run, in name order.
std::vector<std::pair<fs::path, pid_t>> dead_journals(const std::string& journal_dir) {
  std::vector<std::pair<fs::path, pid_t>> out;
  std::error_code ec;
  if (!fs::is_directory(journal_dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(journal_dir, ec)) {
    const fs::path& path = entry.path();
    const std::string stem = path.stem().string();
    if (path.extension() != ".json" || stem.empty() || stem.size() > 9 ||
        !std::all_of(stem.begin(), stem.end(), ::isdigit))
      continue;
    const pid_t pid = static_cast<pid_t>(std::stol(stem));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno == EPERM) continue;  // still running
    out.emplace_back(path, pid);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The limits of one journal, in the reverse of the order applied; nullopt when it is unreadable, an empty
// list when it belongs to another powercap tree.
std::optional<std::vector<LeftPowerCap>> journal_limits(const fs::path& path, pid_t pid, const Rapl& rapl) {
  Json journal;
  try {
    journal = read_json_file(path.string());
  } catch (const Error&) {
    return std::nullopt;
  }
  std::vector<LeftPowerCap> out;
  // A journal written against another powercap tree (a test's fake one) is not this machine's to undo.
  if (journal.value("powercap_root", rapl.root()) != rapl.root()) return out;
  const Json limits = journal.value("limits", Json::array());
  for (auto it = limits.rbegin(); it != limits.rend(); ++it) {
    out.push_back(LeftPowerCap{path.string(), static_cast<int>(pid), it->value("device", std::string("?")),
                               it->value("gpu", false), it->value("index", -1),
                               Watts(it->value("was_w", 0.0)), Watts(it->value("cap_w", 0.0))});
  }
  return out;
}

// The limit now; nullopt when it cannot be read.
std::optional<Watts> current_limit(const LeftPowerCap& left, const Nvml& nvml, const Rapl& rapl) {
  if (left.gpu) {
    if (!nvml.available() || left.index < 0 || left.index >= nvml.device_count()) return std::nullopt;
    const Watts limit = nvml.device_info(left.index).power_limit;
    return limit.value() > 0 ? std::optional<Watts>(limit) : std::nullopt;
  }
  if (!rapl.available() || left.index < 0 || static_cast<size_t>(left.index) >= rapl.packages().size())
    return std::nullopt;
  return rapl.power_limit(static_cast<size_t>(left.index));
}

}  // namespace

std::vector<LeftPowerCap> left_power_caps(const std::string& journal_dir, const Rapl& rapl) {
  std::vector<LeftPowerCap> out;
  for (const auto& [path, pid] : dead_journals(journal_dir)) {
    if (auto limits = journal_limits(path, pid, rapl)) out.insert(out.end(), limits->begin(), limits->end());
  }
  return out;
}

std::vector<std::string> recover_power_caps(const std::string& journal_dir, const Nvml& nvml,
                                            const Rapl& rapl) {
  std::vector<std::string> lines;
  std::error_code ec;
  for (const auto& [path, pid] : dead_journals(journal_dir)) {
    const auto limits = journal_limits(path, pid, rapl);
    if (!limits) {
      lines.push_back(fmt::format("power cap journal {} is unreadable; removed", path.string()));
      fs::remove(path, ec);
      continue;
    }
    if (limits->empty()) continue;  // another powercap tree's
    bool keep = false;
    for (const LeftPowerCap& left : *limits) {
      try {
        const std::optional<Watts> now = current_limit(left, nvml, rapl);
        if (!now) {
          lines.push_back(
              fmt::format("{} was capped at {:g} W by partita process {}, which ended without "
                          "restoring it, and cannot be read now; it was {:g} W before",
                          left.device, left.cap.value(), pid, left.was.value()));
          continue;
        }
        if (std::abs(now->value() - left.cap.value()) > 0.5) {
          lines.push_back(
              fmt::format("left {} at {:g} W: partita process {} had capped it at {:g} W and ended "
                          "without restoring it, but it has changed since (it was {:g} W before)",
                          left.device, now->value(), pid, left.cap.value(), left.was.value()));
          continue;
        }
        if (left.gpu) {
          nvml.set_power_limit(left.index, left.was);
        } else {
          rapl.set_power_limit(static_cast<size_t>(left.index), left.was);
        }
        lines.push_back(
            fmt::format("put {} back at {:g} W (capped at {:g} W by partita process {}, which "
                        "ended without restoring it)",
                        left.device, left.was.value(), left.cap.value(), pid));
      } catch (const std::exception& e) {
        keep = true;
        lines.push_back(fmt::format(
            "{} is still capped at {:g} W by partita process {}, which ended without restoring it, and could "
            "not be put back at {:g} W: {}{}",
            left.device, left.cap.value(), pid, left.was.value(), e.what(),
            left.gpu ? fmt::format(" (as root: nvidia-smi -i {} -pl {:g})", left.index, left.was.value())
                     : std::string(" (as root, or run partita again as root)")));
      }
    }
    if (!keep) fs::remove(path, ec);
  }
  return lines;
}

}  // namespace partita

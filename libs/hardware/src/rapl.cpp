#include "partita/hardware/rapl.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>

#include "partita/core/error.h"

namespace partita {

namespace {

namespace fs = std::filesystem;

// The first line of a sysfs file, or "" when it cannot be read.
std::string read_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return "";
  return line;
}

// A counter in microjoules as joules; nullopt when the file cannot be read or holds no number.
std::optional<Joules> read_microjoules(const fs::path& path) {
  const std::string text = read_line(path);
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return Joules(static_cast<double>(std::stoull(text)) * 1e-6);
}

}  // namespace

Rapl::Rapl(const std::string& root) : root_(root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    error_ = root + " is absent (a VM or a kernel without powercap)";
    return;
  }
  static const std::regex package_zone("intel-rapl:[0-9]+");
  std::vector<fs::path> found;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (std::regex_match(entry.path().filename().string(), package_zone)) found.push_back(entry.path());
  }
  if (found.empty()) {
    error_ = root + " has no intel-rapl:N package zone (no RAPL driver for this CPU)";
    return;
  }
  std::sort(found.begin(), found.end());
  for (const auto& dir : found) {
    const fs::path counter = dir / "energy_uj";
    if (access(counter.c_str(), R_OK) != 0 || !read_microjoules(counter)) {
      zones_.clear();
      error_ = counter.string() + " is unreadable (root is needed on kernels since 5.10)";
      return;
    }
    const std::optional<Joules> range = read_microjoules(dir / "max_energy_range_uj");
    const std::string name = read_line(dir / "name");
    zones_.push_back(
        Zone{dir.string(), name.empty() ? dir.filename().string() : name, range.value_or(Joules(0))});
  }
}

std::vector<std::string> Rapl::packages() const {
  std::vector<std::string> out;
  for (const auto& z : zones_) out.push_back(z.name);
  return out;
}

std::vector<Joules> Rapl::read() const {
  std::vector<Joules> out;
  for (const auto& z : zones_) {
    const std::optional<Joules> now = read_microjoules(fs::path(z.path) / "energy_uj");
    PARTITA_CHECK(now.has_value(), "cannot read the RAPL counter ", z.path,
                  "/energy_uj any more; energy of this run is not measured");
    out.push_back(*now);
  }
  return out;
}

Joules Rapl::used(const std::vector<Joules>& before, const std::vector<Joules>& after) const {
  PARTITA_ASSERT(before.size() == zones_.size() && after.size() == zones_.size(), "RAPL readings of ",
                 zones_.size(), " packages expected");
  Joules total(0);
  for (size_t i = 0; i < zones_.size(); ++i) {
    Joules delta = after[i] - before[i];
    if (delta.value() < 0) delta += zones_[i].range;  // wrapped once
    total += delta;
  }
  return total;
}

std::optional<Watts> Rapl::power_limit(size_t package) const {
  PARTITA_ASSERT(package < zones_.size(), "RAPL package ", package, " of ", zones_.size());
  const std::optional<Joules> uw =
      read_microjoules(fs::path(zones_[package].path) / "constraint_0_power_limit_uw");
  return uw ? std::optional<Watts>(Watts(uw->value())) : std::nullopt;  // the same 1e-6 scale
}

std::optional<Watts> Rapl::max_power(size_t package) const {
  PARTITA_ASSERT(package < zones_.size(), "RAPL package ", package, " of ", zones_.size());
  const std::optional<Joules> uw =
      read_microjoules(fs::path(zones_[package].path) / "constraint_0_max_power_uw");
  return uw && uw->value() > 0 ? std::optional<Watts>(Watts(uw->value())) : std::nullopt;
}

void Rapl::set_power_limit(size_t package, Watts limit) const {
  PARTITA_ASSERT(package < zones_.size(), "RAPL package ", package, " of ", zones_.size());
  const fs::path file = fs::path(zones_[package].path) / "constraint_0_power_limit_uw";
  std::ofstream out(file);
  out << static_cast<uint64_t>(limit.value() * 1e6 + 0.5) << "\n";
  out.flush();
  PARTITA_CHECK(out.good(), "cannot cap ", zones_[package].name, " at ", limit.value(), " W: writing ",
                file.string(), " failed: ", std::strerror(errno), " (RAPL power limits need root)");
}

}  // namespace partita

#pragma once
// The CPU packages' energy counters (RAPL, running average power limit), read through Linux's powercap
// sysfs interface: one top-level zone <root>/intel-rapl:N per package (AMD Zen CPUs appear under the same
// name since Linux 5.8), whose energy_uj counts microjoules and wraps at max_energy_range_uj. Subzones
// (intel-rapl:N:M: cores, uncore, DRAM) are parts of their package and are not added again.
// Reading energy_uj needs root on kernels patched for CVE-2020-8694 (5.10 and later); VMs usually have no
// powercap at all. When no zone can be read, available() is false and error() says why; nothing throws on
// construction.
// Thread safety: immutable after construction; read() may be called from several threads.
#include <optional>
#include <string>
#include <vector>

#include "partita/core/units.h"

namespace partita {

class Rapl {
 public:
  static constexpr const char* kDefaultRoot = "/sys/class/powercap";

  explicit Rapl(const std::string& root = kDefaultRoot);

  bool available() const { return !zones_.empty(); }
  const std::string& root() const { return root_; }  // the powercap tree read
  // Why no counter can be read ("/sys/class/powercap is absent (a VM or a kernel without powercap)"); "" when
  // available.
  const std::string& error() const { return error_; }
  // The package zones' names ("package-0"), in zone order.
  std::vector<std::string> packages() const;

  // Each package's counter now, in zone order. Throws partita::Error when a counter cannot be read.
  std::vector<Joules> read() const;
  // Energy all packages used between two read()s, each counter allowed to wrap once (a counter wraps after
  // minutes to hours, so read at least that often).
  Joules used(const std::vector<Joules>& before, const std::vector<Joules>& after) const;

  // Package `package`'s long-term power limit (constraint_0_power_limit_uw) and the most it may be set to
  // (constraint_0_max_power_uw); nullopt when the zone does not say.
  std::optional<Watts> power_limit(size_t package) const;
  std::optional<Watts> max_power(size_t package) const;
  // Sets the long-term limit. Needs root; throws partita::Error naming the file and the reason otherwise.
  // The limit stays after the process ends: whoever sets it restores it (see power_cap.h).
  void set_power_limit(size_t package, Watts limit) const;

 private:
  struct Zone {
    std::string path;  // the zone's directory
    std::string name;
    Joules range{0};  // max_energy_range_uj: where the counter wraps
  };
  std::string root_;
  std::vector<Zone> zones_;
  std::string error_;
};

}  // namespace partita

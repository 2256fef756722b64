#pragma once
// Power caps for the length of a run: `DEVICE:WATTS`, where DEVICE is cuda:N (the GPU's NVML power management
// limit) or cpu (the long-term RAPL limit of every CPU package, each capped at WATTS). PowerCaps checks each
// cap against what the device accepts, applies them when constructed, and puts the previous limits back when
// destroyed, also when the run fails with an exception (a cap that cannot be applied undoes the ones before
// it). Changing either limit needs root. A process killed outright (SIGKILL, power loss) leaves the caps set:
// the log line of each cap names the limit it replaced.
// Not modelled by the planner: a capped device runs slower by an amount the cost model does not know (plan
// with `--device-slowdown` to try a guess).
#include <string>
#include <vector>

#include "partita/core/units.h"
#include "partita/hardware/nvml.h"
#include "partita/hardware/rapl.h"

namespace partita {

struct PowerCapRequest {
  std::string device;  // "cuda:0" or "cpu"
  Watts watts{0};
};

// "cuda:0:250" or "cpu:95"; throws partita::Error naming the text and the expected form.
PowerCapRequest parse_power_cap(const std::string& text);

class PowerCaps {
 public:
  PowerCaps(const std::vector<PowerCapRequest>& caps, const Nvml& nvml, const Rapl& rapl);
  ~PowerCaps();
  PowerCaps(const PowerCaps&) = delete;
  PowerCaps& operator=(const PowerCaps&) = delete;

  // One line per limit set: "cuda:0 at 250 W (was 700 W)", "cpu package-0 at 95 W (was 120 W)".
  const std::vector<std::string>& applied() const { return applied_; }

 private:
  struct Previous {
    bool gpu = false;
    int index = 0;  // GPU index or RAPL package
    Watts watts{0};
  };
  void restore() noexcept;

  const Nvml& nvml_;
  const Rapl& rapl_;
  std::vector<Previous> previous_;  // in the order applied
  std::vector<std::string> applied_;
};

}  // namespace partita

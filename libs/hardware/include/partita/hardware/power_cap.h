#pragma once
// Power caps for the length of a run: `DEVICE:WATTS`, where DEVICE is cuda:N (the GPU's NVML power management
// limit) or cpu (the long-term RAPL limit of every CPU package, each capped at WATTS). PowerCaps checks each
// cap against what the device accepts, applies them when constructed, and puts the previous limits back when
// destroyed, also when the run fails with an exception (a cap that cannot be applied undoes the ones before
// it). Changing either limit needs root.
// A process killed outright (SIGKILL, OOM killer) cannot put limits back. So, given a journal directory,
// PowerCaps writes what it is about to replace into <dir>/<pid>.json before it changes a limit (atomically:
// temporary file, rename) and removes the file once every limit is back; recover_power_caps, which a later
// run calls, finds journals of processes that no longer run and puts those limits back. After a reboot the
// limits are the device's defaults again: a limit that no longer holds the journaled cap is left alone, and
// the journal says what it was.
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
  // journal_dir: where to journal the limits replaced ("" = no journal); created when missing.
  PowerCaps(const std::vector<PowerCapRequest>& caps, const Nvml& nvml, const Rapl& rapl,
            std::string journal_dir = "");
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
    Watts cap{0};
    std::string label;  // "cuda:0", "cpu package-0"
  };
  void restore() noexcept;
  void write_journal() const;

  const Nvml& nvml_;
  const Rapl& rapl_;
  std::string journal_;             // the journal file ("" = none)
  std::vector<Previous> previous_;  // in the order applied
  std::vector<std::string> applied_;
};

// The default journal directory: cache_dir()/power-caps.
std::string default_power_cap_journal_dir();

// A limit a partita process that no longer runs left capped, as its journal says (read only).
struct LeftPowerCap {
  std::string journal;  // the journal file
  int pid = 0;
  std::string device;  // "cuda:0", "cpu package-0"
  bool gpu = false;
  int index = 0;  // GPU index or RAPL package
  Watts was{0};   // the limit before the cap
  Watts cap{0};
};

// Every limit in the journals in `journal_dir` of processes that no longer run, journal by journal (each in
// the reverse of the order applied), skipping journals written against another powercap tree than
// rapl.root(). Unreadable journals are skipped (recover_power_caps removes them). Nothing when the directory
// does not exist.
std::vector<LeftPowerCap> left_power_caps(const std::string& journal_dir, const Rapl& rapl);

// Puts back the limits that processes which no longer run left capped (their journals in `journal_dir`), and
// removes their journals. A limit that no longer holds the journaled cap (a reboot, someone else's change)
// is left and named. One line per limit, for the log: "put cuda:0 back at 700 W (capped at 250 W by partita
// process 1234, which ended without restoring it)". A limit it cannot set (no root) keeps its journal and
// says how to restore it by hand. Nothing when the directory does not exist.
std::vector<std::string> recover_power_caps(const std::string& journal_dir, const Nvml& nvml,
                                            const Rapl& rapl);

}  // namespace partita

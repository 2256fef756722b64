#pragma once
// One self-contained HTML page for a `partita optimize` run (no scripts, no files beside it; opens in any
// browser): the side-by-side table (plain LibTorch at its best setting, partita's plan, predicted and
// measured step time, speedup, memory, energy), a picture of the plan (a row per device, a bar per stage
// over the graph's node order, with its batch share and memory savings), every measured candidate, per-device
// busy time against the prediction, and two timelines drawn from the Chrome trace: one measured step and the
// simulated step (the trace file itself opens in Perfetto for more).
// Input: optimize's metrics.json and trace.json as written (measured events under pid 1, simulated under
// pid 2). Pure: no I/O. Throws partita::Error when a field the page needs is missing.
#include <string>

#include "partita/core/json_io.h"

namespace partita {

std::string optimize_report_html(const Json& metrics, const Json& trace);

}  // namespace partita

#pragma once
// Plan <-> JSON ("format": "partita.plan"). Keys are written in a fixed order and numbers with full
// precision, so the same plan always gives byte-identical text.
//
// Versions (the reader takes every one of them):
//   1: graph identity, mode, strategy, schedule, optimizer, batch, groups, range stages, unused devices,
//      prediction.
//   2: adds top-level predicted_step_ms, predicted_peak_bytes ({device: bytes}) and predicted_joules (copies
//   of
//      "prediction", written for scripts, ignored on reading); an optional "nodes" list per stage (branch
//      plans, see plan.h); an optional "source" object ({model, inputs} or {model_spec, batch}; devices or
//      cluster; cost; memory_limit_bytes) from which `partita simulate` rebuilds the graph, cluster and cost
//      table.
#include "partita/core/json_io.h"
#include "partita/search/plan.h"

namespace partita {

inline constexpr int kPlanJsonVersion = 2;

Json plan_to_json(const Plan& plan);
// Throws partita::Error naming the missing or bad field, or the unsupported format/version.
Plan plan_from_json(const Json& json);

}  // namespace partita

#pragma once
// Plan <-> JSON ("format": "partita.plan", "version": 1). Keys are written in a fixed order and numbers with
// full precision, so the same plan always gives byte-identical text.
#include "partita/core/json_io.h"
#include "partita/search/plan.h"

namespace partita {

Json plan_to_json(const Plan& plan);
// Throws partita::Error naming the missing or bad field, or the unsupported format/version.
Plan plan_from_json(const Json& json);

}  // namespace partita

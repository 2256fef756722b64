#pragma once
// DeviceSpec and LinkSpec as JSON (machine profiles, `partita devices --json`, caches). Units are SI base
// units in plain numbers: FLOP/s, bytes/s, bytes, watts, seconds; dtypes by their short names (f32, bf16).
// Pure, thread-safe.
#include "partita/core/json_io.h"
#include "partita/hardware/device.h"

namespace partita {

std::string_view device_kind_name(DeviceKind kind);  // "cpu", "cuda", "other"

Json device_spec_to_json(const DeviceSpec& spec);
// Throws partita::Error naming the missing or mistyped field (the caller names the file).
DeviceSpec device_spec_from_json(const Json& j);

Json link_spec_to_json(const LinkSpec& link);
LinkSpec link_spec_from_json(const Json& j);

}  // namespace partita

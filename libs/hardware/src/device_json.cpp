#include "partita/hardware/device_json.h"

#include "partita/core/error.h"

namespace partita {

namespace {

template <typename T>
T field(const Json& j, const char* name) {
  PARTITA_CHECK(j.is_object() && j.contains(name), "JSON device/link entry lacks field '", name,
                "': regenerate it (partita profile --refresh)");
  try {
    return j.at(name).get<T>();
  } catch (const std::exception& e) {
    PARTITA_FAIL("JSON field '", name, "' has the wrong type (", e.what(), "): regenerate it");
  }
}

DeviceKind parse_kind(const std::string& s) {
  if (s == "cpu") return DeviceKind::kCpu;
  if (s == "cuda") return DeviceKind::kCuda;
  PARTITA_CHECK(s == "other", "unknown device kind '", s, "': use cpu, cuda or other");
  return DeviceKind::kOther;
}

}  // namespace

std::string_view device_kind_name(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::kCpu:
      return "cpu";
    case DeviceKind::kCuda:
      return "cuda";
    case DeviceKind::kOther:
      break;
  }
  return "other";
}

Json device_spec_to_json(const DeviceSpec& spec) {
  Json j;
  j["name"] = spec.name;
  j["kind"] = device_kind_name(spec.kind);
  Json peaks = Json::object();
  for (const auto& [dtype, rate] : spec.peak_flops) peaks[std::string(dtype_name(dtype))] = rate.value();
  j["peak_flops"] = peaks;
  j["memory_bandwidth"] = spec.memory_bandwidth.value();
  j["memory"] = spec.memory.value();
  j["tdp"] = spec.tdp.value();
  j["idle_power"] = spec.idle_power.value();
  j["op_overhead"] = spec.op_overhead.value();
  j["flops_efficiency"] = spec.flops_efficiency;
  j["cores"] = spec.cores;
  j["measured"] = spec.measured;
  j["source"] = spec.source;
  return j;
}

DeviceSpec device_spec_from_json(const Json& j) {
  DeviceSpec spec;
  spec.name = field<std::string>(j, "name");
  spec.kind = parse_kind(field<std::string>(j, "kind"));
  const Json peaks = field<Json>(j, "peak_flops");
  PARTITA_CHECK(peaks.is_object(), "JSON field 'peak_flops' of '", spec.name, "' is not an object");
  for (const auto& [name, rate] : peaks.items()) {
    spec.peak_flops[parse_dtype(name)] = FlopsPerSecond(rate.get<double>());
  }
  spec.memory_bandwidth = BytesPerSecond(field<double>(j, "memory_bandwidth"));
  spec.memory = Bytes(field<int64_t>(j, "memory"));
  spec.tdp = Watts(field<double>(j, "tdp"));
  spec.idle_power = Watts(field<double>(j, "idle_power"));
  spec.op_overhead = Seconds(field<double>(j, "op_overhead"));
  if (j.contains("flops_efficiency"))
    spec.flops_efficiency = j.at("flops_efficiency").get<std::map<std::string, double>>();
  spec.cores = field<int>(j, "cores");
  spec.measured = field<bool>(j, "measured");
  spec.source = field<std::string>(j, "source");
  return spec;
}

Json link_spec_to_json(const LinkSpec& link) {
  Json j;
  j["name"] = link.name;
  j["latency"] = link.latency.value();
  j["bandwidth"] = link.bandwidth.value();
  j["source"] = link.source;
  return j;
}

LinkSpec link_spec_from_json(const Json& j) {
  return LinkSpec{field<std::string>(j, "name"), Seconds(field<double>(j, "latency")),
                  BytesPerSecond(field<double>(j, "bandwidth")), field<std::string>(j, "source")};
}

}  // namespace partita

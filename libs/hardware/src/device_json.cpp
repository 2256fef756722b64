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

Json fits_to_json(const std::map<std::string, OpClassFit>& fits) {
  Json out = Json::object();
  for (const auto& [name, fit] : fits) {
    out[name] = {{"fixed", fit.fixed.value()},
                 {"flops_rate", fit.flops_rate.value()},
                 {"bandwidth", fit.bandwidth.value()},
                 {"additive", fit.additive},
                 {"samples", fit.samples},
                 {"rms_relative_error", fit.rms_relative_error}};
  }
  return out;
}

// An optional map of fits; absent means none.
std::map<std::string, OpClassFit> fits_from_json(const Json& j, const char* name, const std::string& device) {
  std::map<std::string, OpClassFit> out;
  if (!j.contains(name)) return out;
  const Json& fits = j.at(name);
  PARTITA_CHECK(fits.is_object(), "JSON field '", name, "' of '", device, "' is not an object");
  for (const auto& [cls, f] : fits.items()) {
    OpClassFit fit;
    fit.fixed = Seconds(field<double>(f, "fixed"));
    fit.flops_rate = FlopsPerSecond(field<double>(f, "flops_rate"));
    fit.bandwidth = BytesPerSecond(field<double>(f, "bandwidth"));
    fit.additive = field<bool>(f, "additive");
    fit.samples = field<int>(f, "samples");
    fit.rms_relative_error = field<double>(f, "rms_relative_error");
    out[cls] = fit;
  }
  return out;
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
  j["op_class_fits"] = fits_to_json(spec.op_class_fits);
  j["op_class_backward_fits"] = fits_to_json(spec.op_class_backward_fits);
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
  // Optional: specs written before calibration (and datasheet specs) have no fits.
  spec.op_class_fits = fits_from_json(j, "op_class_fits", spec.name);
  spec.op_class_backward_fits = fits_from_json(j, "op_class_backward_fits", spec.name);
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

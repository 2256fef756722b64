#include "partita/hardware/hardware_db.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/hardware/close_matches.h"
#include "partita/hardware/yaml_map.h"

namespace partita {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

template <typename T>
const T* find_named(const std::vector<T>& items, std::string_view name) {
  for (const auto& item : items) {
    if (item.name == name) return &item;
  }
  for (const auto& item : items) {
    if (iequals(item.name, name)) return &item;
  }
  return nullptr;
}

DeviceKind parse_kind(const YamlMap& map) {
  const std::string kind = map.string("kind");
  if (kind == "cuda") return DeviceKind::kCuda;
  if (kind == "cpu") return DeviceKind::kCpu;
  if (kind == "other") return DeviceKind::kOther;
  map.fail(map.required("kind"), "kind", "must be cuda, cpu or other, not '" + kind + "'");
}

DeviceSpec parse_device(const std::string& file, const YAML::Node& node) {
  const std::string name =
      node.IsMap() && node["name"] && node["name"].IsScalar() ? node["name"].Scalar() : "?";
  const YamlMap map(file, node, "device '" + name + "'");
  map.reject_unknown({"name", "kind", "peak_flops", "memory", "memory_bandwidth", "tdp", "idle_power",
                      "op_overhead", "cores", "source"});
  DeviceSpec spec;
  spec.name = map.string("name");
  spec.kind = parse_kind(map);
  const YAML::Node flops = map.required("peak_flops");
  if (!flops.IsMap())
    map.fail(flops, "peak_flops", "must be a map like {f32: 67 TFLOP/s, bf16: 989 TFLOP/s}");
  for (const auto& kv : flops) {
    const std::string dtype_text = kv.first.Scalar();
    DType dtype{};
    try {
      dtype = parse_dtype(dtype_text);
    } catch (const Error& e) {
      map.fail(kv.first, "peak_flops." + dtype_text, std::string("is not a dtype: ") + e.what());
    }
    spec.peak_flops[dtype] = map.flops_per_second(kv.second, "peak_flops." + dtype_text);
  }
  if (!spec.peak_flops.contains(DType::kFloat32)) map.fail(flops, "peak_flops.f32", "is missing");
  spec.memory = map.bytes("memory");
  spec.memory_bandwidth = map.bytes_per_second("memory_bandwidth");
  spec.tdp = map.watts("tdp");
  spec.idle_power = map.watts("idle_power", Watts(0));
  spec.op_overhead = map.seconds("op_overhead", Seconds(0));
  spec.cores = map.integer("cores", 0);
  if (spec.kind == DeviceKind::kCpu && spec.cores <= 0)
    map.fail(map.node(), "cores", "must be > 0 for a CPU");
  if (spec.memory_bandwidth.value() <= 0)
    map.fail(map.required("memory_bandwidth"), "memory_bandwidth", "must be > 0");
  if (spec.idle_power > spec.tdp) map.fail(map.required("idle_power"), "idle_power", "must not exceed tdp");
  spec.source = map.optional_string("source").value_or("");
  return spec;
}

LinkSpec parse_link(const std::string& file, const YAML::Node& node) {
  const std::string name =
      node.IsMap() && node["name"] && node["name"].IsScalar() ? node["name"].Scalar() : "?";
  const YamlMap map(file, node, "link '" + name + "'");
  map.reject_unknown({"name", "latency", "bandwidth", "source"});
  LinkSpec link;
  link.name = map.string("name");
  link.latency = map.seconds("latency");
  link.bandwidth = map.bytes_per_second("bandwidth");
  if (link.bandwidth.value() <= 0) map.fail(map.required("bandwidth"), "bandwidth", "must be > 0");
  link.source = map.optional_string("source").value_or("");
  return link;
}

template <typename T, typename Parse>
std::vector<T> parse_list(const YamlMap& top, std::string_view key, Parse parse, const std::string& file) {
  std::vector<T> out;
  if (!top.has(key)) return out;
  const YAML::Node list = top.required(key);
  if (!list.IsSequence()) top.fail(list, key, "must be a list of entries starting with '- name: ...'");
  for (const auto& item : list) {
    T parsed = parse(file, item);
    if (find_named(out, parsed.name)) {
      top.fail(item, key, "lists '" + parsed.name + "' twice (names are case-insensitive)");
    }
    out.push_back(std::move(parsed));
  }
  return out;
}

template <typename T>
std::vector<std::string> names_of(const std::vector<T>& items) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(i.name);
  return out;
}

}  // namespace

const DeviceSpec* HardwareDb::find_device(std::string_view name) const { return find_named(devices, name); }
const LinkSpec* HardwareDb::find_link(std::string_view name) const { return find_named(links, name); }

const DeviceSpec& HardwareDb::device(std::string_view name) const {
  const DeviceSpec* d = find_device(name);
  PARTITA_CHECK(d != nullptr, "unknown device profile '", name, "'", did_you_mean(name, device_names()),
                " (profiles are in ", path.empty() ? "the hardware database" : path, ")");
  return *d;
}

const LinkSpec& HardwareDb::link(std::string_view name) const {
  const LinkSpec* l = find_link(name);
  PARTITA_CHECK(l != nullptr, "unknown link profile '", name, "'", did_you_mean(name, link_names()),
                " (profiles are in ", path.empty() ? "the hardware database" : path, ")");
  return *l;
}

const DeviceSpec* HardwareDb::match_cpu_model(std::string_view model_name) const {
  const DeviceSpec* best = nullptr;
  for (const auto& d : devices) {
    if (d.kind != DeviceKind::kCpu || model_name.find(d.name) == std::string_view::npos) continue;
    if (!best || d.name.size() > best->name.size()) best = &d;
  }
  return best;
}

std::vector<std::string> HardwareDb::device_names() const { return names_of(devices); }
std::vector<std::string> HardwareDb::link_names() const { return names_of(links); }

HardwareDb parse_hardware_db(const std::string& yaml_text, const std::string& file_label) {
  const YAML::Node root = load_yaml_text(yaml_text, file_label);
  const YamlMap top(file_label, root, "hardware profile file");
  top.reject_unknown({"version", "devices", "links"});
  const int version = top.integer("version", 1);
  if (version != 1) top.fail(top.required("version"), "version", "must be 1 (this partita reads version 1)");
  HardwareDb db;
  db.path = file_label;
  db.devices = parse_list<DeviceSpec>(top, "devices", parse_device, file_label);
  db.links = parse_list<LinkSpec>(top, "links", parse_link, file_label);
  return db;
}

HardwareDb load_hardware_db(const std::string& path) { return parse_hardware_db(read_text_file(path), path); }

std::string default_hardware_db_path() {
  if (const char* env = std::getenv("PARTITA_HARDWARE_DB"); env && *env) return env;
#ifdef PARTITA_CONFIG_DIR
  return std::string(PARTITA_CONFIG_DIR) + "/hardware_profiles.yaml";
#else
  return "config/hardware_profiles.yaml";
#endif
}

}  // namespace partita

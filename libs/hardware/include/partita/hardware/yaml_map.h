#pragma once
// Reading YAML files whose errors name the file, the line and the field, one line each:
//   "config/hardware_profiles.yaml:42: device 'H100 SXM': field 'memory_bandwidth' must be ..."
// Used by every YAML file partita reads: the hardware database, cluster files (cluster_file.h) and model
// specs (search/model_spec.h). A value is taken only when it is exactly what the field asks for: yaml-cpp's
// as<int>(fallback) gives the fallback for "1.5", "2^31" or a list, which would describe another model or
// cluster than the file does.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "partita/core/units.h"

namespace partita {

// Parses a whole YAML file; throws partita::Error "file:line: YAML syntax error: ..." or "cannot read
// 'path'".
YAML::Node load_yaml_file(const std::string& path);
// Parses YAML text; `file_label` (a path, or what the text is) leads the errors.
YAML::Node load_yaml_text(const std::string& text, const std::string& file_label);

// "file:line" of a node (lines counted from 1); just the file where the node has no place in it.
std::string yaml_location(const std::string& file, const YAML::Node& node);

// A YAML map plus where it came from and what it describes ("device 'H100 SXM'").
class YamlMap {
 public:
  // Throws when `node` is not a map ("... must be a map of 'field: value' lines").
  YamlMap(std::string file, YAML::Node node, std::string context);

  bool has(std::string_view key) const;
  YAML::Node node() const { return node_; }
  // The value of a required field; throws "field 'key' is missing".
  YAML::Node required(std::string_view key) const;
  std::string string(std::string_view key) const;  // one value (not a list or a map)
  std::optional<std::string> optional_string(std::string_view key) const;
  // A whole number within int; fallback when absent.
  int integer(std::string_view key, int fallback) const;
  // A list of whole numbers within int; fallback when absent.
  std::vector<int> integer_list(std::string_view key, std::vector<int> fallback) const;
  std::vector<std::string> string_list(std::string_view key) const;  // [] when absent
  // Field with a unit (quantity_parse.h); absent -> fallback.
  Bytes bytes(std::string_view key, std::optional<Bytes> fallback = std::nullopt) const;
  BytesPerSecond bytes_per_second(std::string_view key,
                                  std::optional<BytesPerSecond> fallback = std::nullopt) const;
  Watts watts(std::string_view key, std::optional<Watts> fallback = std::nullopt) const;
  Seconds seconds(std::string_view key, std::optional<Seconds> fallback = std::nullopt) const;
  // A scalar parsed as FLOP/s; `at` is the value node, `field` its printed name ("peak_flops.f32").
  FlopsPerSecond flops_per_second(const YAML::Node& at, const std::string& field) const;
  // Throws naming the first key not in `known`, with close matches and the known fields.
  void reject_unknown(const std::vector<std::string>& known) const;
  // Throws "file:line: context: field 'field' message".
  [[noreturn]] void fail(const YAML::Node& at, std::string_view field, std::string_view message) const;

 private:
  std::string scalar(std::string_view key, std::string_view expectation) const;
  std::string file_;
  YAML::Node node_;
  std::string context_;
};

}  // namespace partita

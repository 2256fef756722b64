#pragma once
// Internal: reading YAML maps with errors that name the file, the line and the field:
//   "config/hardware_profiles.yaml:42: device 'H100 SXM': field 'memory_bandwidth' must be ..."
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "partita/core/units.h"

namespace partita::detail {

// The whole file as text; throws partita::Error "cannot read 'path': no such file".
std::string read_text_file(const std::string& path);
// Parses a whole YAML file; throws partita::Error "file:line: YAML syntax error: ..." or "cannot read file".
YAML::Node load_yaml_file(const std::string& path);
YAML::Node load_yaml_text(const std::string& text, const std::string& file_label);

// "file:line" of a node (lines counted from 1).
std::string yaml_location(const std::string& file, const YAML::Node& node);

// A YAML map plus where it came from and what it describes ("device 'H100 SXM'").
class YamlMap {
 public:
  // Throws when `node` is not a map ("... must be a map of fields").
  YamlMap(std::string file, YAML::Node node, std::string context);

  bool has(std::string_view key) const;
  YAML::Node node() const { return node_; }
  // The value of a required field; throws "field 'key' is missing".
  YAML::Node required(std::string_view key) const;
  std::string string(std::string_view key) const;
  std::optional<std::string> optional_string(std::string_view key) const;
  int integer(std::string_view key, int fallback) const;             // fallback when absent
  std::vector<std::string> string_list(std::string_view key) const;  // [] when absent
  // Field with a unit (quantity_parse.h); absent -> fallback.
  Bytes bytes(std::string_view key, std::optional<Bytes> fallback = std::nullopt) const;
  BytesPerSecond bytes_per_second(std::string_view key,
                                  std::optional<BytesPerSecond> fallback = std::nullopt) const;
  Watts watts(std::string_view key, std::optional<Watts> fallback = std::nullopt) const;
  Seconds seconds(std::string_view key, std::optional<Seconds> fallback = std::nullopt) const;
  // A scalar parsed as FLOP/s; `at` is the value node, `field` its printed name ("peak_flops.f32").
  FlopsPerSecond flops_per_second(const YAML::Node& at, const std::string& field) const;
  // Throws naming the first key not in `known`, with close matches.
  void reject_unknown(std::initializer_list<std::string_view> known) const;
  // Throws "file:line: context: field 'field' message".
  [[noreturn]] void fail(const YAML::Node& at, std::string_view field, std::string_view message) const;

 private:
  std::string scalar(std::string_view key, std::string_view expectation) const;
  std::string file_;
  YAML::Node node_;
  std::string context_;
};

}  // namespace partita::detail

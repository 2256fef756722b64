#include "partita/hardware/yaml_map.h"

#include <algorithm>
#include <climits>

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/hardware/close_matches.h"
#include "partita/hardware/quantity_parse.h"

namespace partita {

YAML::Node load_yaml_text(const std::string& text, const std::string& file_label) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    PARTITA_FAIL(file_label, ":", e.mark.line + 1, ": YAML syntax error: ", e.msg);
  }
}

YAML::Node load_yaml_file(const std::string& path) { return load_yaml_text(read_text_file(path), path); }

std::string yaml_location(const std::string& file, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.line >= 0 ? file + ":" + std::to_string(mark.line + 1) : file;
}

YamlMap::YamlMap(std::string file, YAML::Node node, std::string context)
    : file_(std::move(file)), node_(std::move(node)), context_(std::move(context)) {
  PARTITA_CHECK(node_.IsMap(), yaml_location(file_, node_), ": ", context_,
                " must be a map of 'field: value' lines");
}

void YamlMap::fail(const YAML::Node& at, std::string_view field, std::string_view message) const {
  PARTITA_FAIL(yaml_location(file_, at.IsDefined() ? at : node_), ": ", context_, ": field '", field, "' ",
               message);
}

bool YamlMap::has(std::string_view key) const { return static_cast<bool>(node_[std::string(key)]); }

YAML::Node YamlMap::required(std::string_view key) const {
  YAML::Node v = node_[std::string(key)];
  if (!v) fail(node_, key, "is missing");
  return v;
}

std::string YamlMap::scalar(std::string_view key, std::string_view expectation) const {
  const YAML::Node v = required(key);
  if (!v.IsScalar()) fail(v, key, std::string("must be ") + std::string(expectation));
  return v.Scalar();
}

std::string YamlMap::string(std::string_view key) const { return scalar(key, "a string"); }

std::optional<std::string> YamlMap::optional_string(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return string(key);
}

namespace {
// The whole number `text` spells, when it fits an int (std::stoi alone takes "1.5" as 1).
std::optional<int> whole_number(const std::string& text) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v >= INT_MIN && v <= INT_MAX) return static_cast<int>(v);
  } catch (const std::exception&) {  // not a number, or beyond long long
  }
  return std::nullopt;
}
}  // namespace

int YamlMap::integer(std::string_view key, int fallback) const {
  if (!has(key)) return fallback;
  const std::string s = scalar(key, "a whole number");
  if (const auto v = whole_number(s)) return *v;
  fail(required(key), key, "must be a whole number up to " + std::to_string(INT_MAX) + ", not '" + s + "'");
}

std::vector<int> YamlMap::integer_list(std::string_view key, std::vector<int> fallback) const {
  if (!has(key)) return fallback;
  const YAML::Node v = required(key);
  if (!v.IsSequence()) fail(v, key, "must be a list of whole numbers like [3, 4, 6, 3]");
  std::vector<int> out;
  for (const auto& item : v) {
    const auto n = item.IsScalar() ? whole_number(item.Scalar()) : std::nullopt;
    if (!n) {
      fail(item, key,
           "item " + std::to_string(out.size() + 1) + " must be a whole number up to " +
               std::to_string(INT_MAX) +
               (item.IsScalar() ? ", not '" + item.Scalar() + "'" : std::string(", not a list or a map")));
    }
    out.push_back(*n);
  }
  return out;
}

std::vector<std::string> YamlMap::string_list(std::string_view key) const {
  if (!has(key)) return {};
  const YAML::Node v = required(key);
  if (!v.IsSequence()) fail(v, key, "must be a list like [a, b]");
  std::vector<std::string> out;
  for (const auto& item : v) {
    if (!item.IsScalar()) fail(item, key, "must be a list of strings");
    out.push_back(item.Scalar());
  }
  return out;
}

namespace {
// One template for the unit fields: parse, or fail naming the example.
template <typename Q, typename Parse>
Q unit_field(const YamlMap& map, std::string_view key, std::optional<Q> fallback, Parse parse,
             std::string_view example) {
  if (!map.has(key) && fallback) return *fallback;
  const YAML::Node v = map.required(key);
  if (v.IsScalar()) {
    if (const auto q = parse(v.Scalar())) return *q;
  }
  map.fail(v, key,
           "must be a number with a unit like '" + std::string(example) + "'" +
               (v.IsScalar() ? ", not '" + v.Scalar() + "'" : std::string()));
}
}  // namespace

Bytes YamlMap::bytes(std::string_view key, std::optional<Bytes> fallback) const {
  return unit_field(*this, key, fallback, parse_bytes, kBytesExample);
}
BytesPerSecond YamlMap::bytes_per_second(std::string_view key, std::optional<BytesPerSecond> fallback) const {
  return unit_field(*this, key, fallback, parse_bytes_per_second, kBytesPerSecondExample);
}
Watts YamlMap::watts(std::string_view key, std::optional<Watts> fallback) const {
  return unit_field(*this, key, fallback, parse_watts, kWattsExample);
}
Seconds YamlMap::seconds(std::string_view key, std::optional<Seconds> fallback) const {
  return unit_field(*this, key, fallback, parse_seconds, kSecondsExample);
}

FlopsPerSecond YamlMap::flops_per_second(const YAML::Node& at, const std::string& field) const {
  if (at.IsScalar()) {
    if (const auto q = parse_flops_per_second(at.Scalar())) return *q;
  }
  fail(at, field,
       "must be a number with a unit like '" + std::string(kFlopsPerSecondExample) + "'" +
           (at.IsScalar() ? ", not '" + at.Scalar() + "'" : std::string()));
}

void YamlMap::reject_unknown(const std::vector<std::string>& known) const {
  for (const auto& kv : node_) {
    const std::string key = kv.first.Scalar();
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string list;
    for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
    fail(kv.first, key, "is not known" + did_you_mean(key, known) + " (known fields: " + list + ")");
  }
}

}  // namespace partita

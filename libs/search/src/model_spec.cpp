#include "partita/search/model_spec.h"

#include <climits>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "partita/core/error.h"

namespace partita {

namespace {

// Bounds that keep a spec's graph buildable and its counts (parameters, FLOPs, bytes) within int64: planning
// time grows faster than the layer count (4000 GPT layers took 114 s to plan on 2 cores; published dense
// models have up to ~100-200), and width 2^20 squared times 12 layers' matrices is still far from overflow.
constexpr int kMaxLayers = 1024;   // GPT layers; also the blocks of one ResNet stage
constexpr int kMaxSize = 1 << 20;  // width, seq, channels, classes, a stage's width
constexpr int kMaxVocab = 1 << 24;
constexpr int kMaxImage = 1 << 14;

void check_range(const std::string& name, const char* field, int value, int least, int most) {
  PARTITA_CHECK(value >= least && value <= most, "model spec '", name, "': ", field, " is ", value,
                "; it must be ", least, " to ", most);
}

}  // namespace

void ModelSpec::validate() const {
  PARTITA_CHECK(!name.empty(), "model spec: 'name' is missing");
  if (architecture == Architecture::kGpt) {
    check_range(name, "layers", layers, 1, kMaxLayers);
    check_range(name, "width", width, 1, kMaxSize);
    check_range(name, "heads", heads, 1, width);
    check_range(name, "seq", seq, 1, kMaxSize);
    check_range(name, "vocab", vocab, 1, kMaxVocab);
    PARTITA_CHECK(width % heads == 0, "model spec '", name, "': width ", width, " is not divisible by heads ",
                  heads);
  } else {
    PARTITA_CHECK(!blocks.empty() && blocks.size() == widths.size(), "model spec '", name,
                  "': 'blocks' and 'widths' need the same, non-zero length");
    PARTITA_CHECK(blocks.size() <= 16, "model spec '", name, "': ", blocks.size(),
                  " stages; a ResNet spec has at most 16");
    for (size_t i = 0; i < blocks.size(); ++i) {
      check_range(name, "a stage's blocks", blocks[i], 1, kMaxLayers);
      check_range(name, "a stage's width", widths[i], 1, kMaxSize);
    }
    check_range(name, "image", image, 32, kMaxImage);
    check_range(name, "channels", channels, 1, kMaxSize);
    check_range(name, "classes", classes, 1, kMaxSize);
  }
}

namespace {

// A whole number. yaml-cpp's as<int>(fallback) gives the fallback for text it cannot convert too (1.5, 2^31,
// "twelve"), which planned another model than the file described.
int whole_number(const YAML::Node& n, const std::string& field) {
  const std::string text = n.IsScalar() ? n.Scalar() : std::string();
  long long value = 0;
  std::size_t used = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  PARTITA_CHECK(used > 0 && used == text.size() && value >= INT_MIN && value <= INT_MAX, "model spec: '",
                field, "' is ", n.IsScalar() ? "'" + text + "'" : std::string("not a single value"),
                ", not a whole number");
  return static_cast<int>(value);
}

// A text field, or `fallback` when absent (as<std::string>(fallback) gave the fallback for a list or a map).
std::string text_field(const YAML::Node& y, const char* key, const std::string& fallback) {
  const YAML::Node n = y[key];
  if (!n) return fallback;
  PARTITA_CHECK(n.IsScalar(), "model spec: '", key, "' must be a single value, not a list or a map");
  return n.Scalar();
}

int int_field(const YAML::Node& y, const char* key, int fallback) {
  const YAML::Node n = y[key];
  return n ? whole_number(n, key) : fallback;
}

std::vector<int> int_list_field(const YAML::Node& y, const char* key, std::vector<int> fallback) {
  const YAML::Node n = y[key];
  if (!n) return fallback;
  PARTITA_CHECK(n.IsSequence(), "model spec: '", key, "' must be a list of whole numbers, e.g. [3, 4, 6, 3]");
  std::vector<int> values;
  for (size_t i = 0; i < n.size(); ++i)
    values.push_back(whole_number(n[i], std::string(key) + "[" + std::to_string(i) + "]"));
  return values;
}

}  // namespace

ModelSpec parse_model_spec(const std::string& yaml_text) {
  ModelSpec s;
  try {
    const YAML::Node y = YAML::Load(yaml_text);
    PARTITA_CHECK(y.IsMap(), "model spec: expected a YAML mapping");
    PARTITA_CHECK(y["architecture"], "model spec: 'architecture' is missing; use gpt or resnet");
    const std::string arch = text_field(y, "architecture", "");
    PARTITA_CHECK(arch == "gpt" || arch == "resnet", "model spec: architecture '", arch,
                  "': use gpt or resnet");
    s.architecture = arch == "gpt" ? Architecture::kGpt : Architecture::kResnet;
    // A field of the other architecture, or a misspelt one, would be left out of the model planned.
    static const std::set<std::string> kCommon{"name", "architecture", "dtype"};
    static const std::set<std::string> kGptFields{"layers", "width", "heads", "seq", "vocab"};
    static const std::set<std::string> kResnetFields{"image",  "channels", "classes",
                                                     "blocks", "widths",   "block"};
    const char* const kGptList = "layers, width, heads, seq, vocab";
    const char* const kResnetList = "image, channels, classes, blocks, widths, block";
    const std::set<std::string>& own = s.architecture == Architecture::kGpt ? kGptFields : kResnetFields;
    for (const auto& field : y) {
      const std::string key = field.first.Scalar();
      PARTITA_CHECK(kCommon.count(key) > 0 || own.count(key) > 0, "model spec: field '", key,
                    "' is not one of a ", arch, " spec's: name, architecture, dtype, ",
                    s.architecture == Architecture::kGpt ? kGptList : kResnetList);
    }
    s.name = text_field(y, "name", "");
    s.dtype = parse_dtype(text_field(y, "dtype", "f32"));
    s.layers = int_field(y, "layers", s.layers);
    s.width = int_field(y, "width", s.width);
    s.heads = int_field(y, "heads", s.heads);
    s.seq = int_field(y, "seq", s.seq);
    s.vocab = int_field(y, "vocab", s.vocab);
    s.image = int_field(y, "image", s.image);
    s.channels = int_field(y, "channels", s.channels);
    s.classes = int_field(y, "classes", s.classes);
    s.blocks = int_list_field(y, "blocks", s.blocks);
    s.widths = int_list_field(y, "widths", s.widths);
    const std::string block = text_field(y, "block", "bottleneck");
    PARTITA_CHECK(block == "basic" || block == "bottleneck", "model spec: block '", block,
                  "': use basic or bottleneck");
    s.block = block == "basic" ? ResidualBlock::kBasic : ResidualBlock::kBottleneck;
  } catch (const YAML::Exception& e) {
    PARTITA_FAIL("model spec: bad YAML: ", e.what());
  }
  s.validate();
  return s;
}

ModelSpec load_model_spec(const std::string& path) {
  std::ifstream in(path);
  PARTITA_CHECK(in.good(), "cannot read model spec '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return parse_model_spec(ss.str());
  } catch (const Error& e) {
    PARTITA_FAIL(path, ": ", e.what());
  }
}

}  // namespace partita

#include "partita/search/model_spec.h"

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/hardware/yaml_map.h"

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

ModelSpec parse_model_spec(const std::string& yaml_text, const std::string& file_label) {
  const YamlMap top(file_label, load_yaml_text(yaml_text, file_label), "model spec");
  const std::string arch = top.string("architecture");
  if (arch != "gpt" && arch != "resnet")
    top.fail(top.required("architecture"), "architecture", "must be gpt or resnet, not '" + arch + "'");
  ModelSpec s;
  s.architecture = arch == "gpt" ? Architecture::kGpt : Architecture::kResnet;
  // A field of the other architecture, or a misspelt one, would be left out of the model planned.
  const YamlMap y(file_label, top.node(), arch + " model spec");
  if (s.architecture == Architecture::kGpt) {
    y.reject_unknown({"name", "architecture", "dtype", "layers", "width", "heads", "seq", "vocab"});
  } else {
    y.reject_unknown(
        {"name", "architecture", "dtype", "image", "channels", "classes", "blocks", "widths", "block"});
  }
  s.name = y.string("name");
  try {
    s.dtype = parse_dtype(y.optional_string("dtype").value_or("f32"));
  } catch (const Error& e) {
    y.fail(y.required("dtype"), "dtype", std::string("is not one partita knows (") + e.what() + ")");
  }
  s.layers = y.integer("layers", s.layers);
  s.width = y.integer("width", s.width);
  s.heads = y.integer("heads", s.heads);
  s.seq = y.integer("seq", s.seq);
  s.vocab = y.integer("vocab", s.vocab);
  s.image = y.integer("image", s.image);
  s.channels = y.integer("channels", s.channels);
  s.classes = y.integer("classes", s.classes);
  s.blocks = y.integer_list("blocks", s.blocks);
  s.widths = y.integer_list("widths", s.widths);
  const std::string block = y.optional_string("block").value_or("bottleneck");
  if (block != "basic" && block != "bottleneck")
    y.fail(y.required("block"), "block", "must be basic or bottleneck, not '" + block + "'");
  s.block = block == "basic" ? ResidualBlock::kBasic : ResidualBlock::kBottleneck;
  try {
    s.validate();
  } catch (const Error& e) {
    PARTITA_FAIL(file_label, ": ", e.what());
  }
  return s;
}

ModelSpec load_model_spec(const std::string& path) { return parse_model_spec(read_text_file(path), path); }

}  // namespace partita

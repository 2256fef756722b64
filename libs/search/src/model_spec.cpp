#include "partita/search/model_spec.h"

#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "partita/core/error.h"

namespace partita {

void ModelSpec::validate() const {
  PARTITA_CHECK(!name.empty(), "model spec: 'name' is missing");
  if (architecture == Architecture::kGpt) {
    PARTITA_CHECK(layers >= 1 && width >= 1 && heads >= 1 && seq >= 1 && vocab >= 1, "model spec '", name,
                  "': layers, width, heads, seq and vocab must be positive");
    PARTITA_CHECK(width % heads == 0, "model spec '", name, "': width ", width, " is not divisible by heads ",
                  heads);
  } else {
    PARTITA_CHECK(!blocks.empty() && blocks.size() == widths.size(), "model spec '", name,
                  "': 'blocks' and 'widths' need the same, non-zero length");
    PARTITA_CHECK(image >= 32 && channels >= 1 && classes >= 1, "model spec '", name,
                  "': image must be at least 32, channels and classes positive");
  }
}

ModelSpec parse_model_spec(const std::string& yaml_text) {
  ModelSpec s;
  try {
    const YAML::Node y = YAML::Load(yaml_text);
    PARTITA_CHECK(y.IsMap(), "model spec: expected a YAML mapping");
    s.name = y["name"].as<std::string>("");
    const std::string arch = y["architecture"].as<std::string>("gpt");
    PARTITA_CHECK(arch == "gpt" || arch == "resnet", "model spec: architecture '", arch,
                  "': use gpt or resnet");
    s.architecture = arch == "gpt" ? Architecture::kGpt : Architecture::kResnet;
    s.dtype = parse_dtype(y["dtype"].as<std::string>("f32"));
    s.layers = y["layers"].as<int>(s.layers);
    s.width = y["width"].as<int>(s.width);
    s.heads = y["heads"].as<int>(s.heads);
    s.seq = y["seq"].as<int>(s.seq);
    s.vocab = y["vocab"].as<int>(s.vocab);
    s.image = y["image"].as<int>(s.image);
    s.channels = y["channels"].as<int>(s.channels);
    s.classes = y["classes"].as<int>(s.classes);
    if (y["blocks"]) s.blocks = y["blocks"].as<std::vector<int>>();
    if (y["widths"]) s.widths = y["widths"].as<std::vector<int>>();
    const std::string block = y["block"].as<std::string>("bottleneck");
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

#include "partita/search/model_spec.h"

#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

std::string model(const char* name) { return std::string(PARTITA_SOURCE_DIR) + "/config/models/" + name; }

TEST(ModelSpec, Gpt2SmallHasTheKnownShape) {
  const ModelSpec s = load_model_spec(model("gpt2-small.yaml"));
  const Graph g = build_model_graph(s, 2);
  EXPECT_EQ(g.num_nodes(), 3 + 12 * 12 + 2);
  // 124M with the tied head; partita's head is untied: + vocab x width.
  const double params = static_cast<double>(g.parameter_elements());
  EXPECT_NEAR(params, 124.4e6 + 50257.0 * 768, 1e6);
  // Forward FLOPs ~ 2 x params x tokens + attention.
  EXPECT_GT(g.total_flops().value(), 2 * 2 * 1024 * 124e6);
  for (const Node& n : g.nodes()) EXPECT_EQ(n.cost.status, CostStatus::kEstimated);
}

TEST(ModelSpec, Gpt3AndResnetBuild) {
  const Graph gpt3 = build_model_graph(load_model_spec(model("gpt3-175b.yaml")), 1);
  EXPECT_NEAR(static_cast<double>(gpt3.parameter_elements()), 175e9, 3e9);
  EXPECT_EQ(gpt3.value(gpt3.parameters()[0].value).tensors[0].dtype, DType::kBFloat16);
  const Graph r50 = build_model_graph(load_model_spec(model("resnet50.yaml")), 1);
  EXPECT_NEAR(static_cast<double>(r50.parameter_elements()), 25.5e6, 0.3e6);
  EXPECT_NEAR(r50.total_flops().value(), 8.2e9, 0.6e9);  // ~4.1 GMAC
  const Graph g24 = build_model_graph(load_model_spec(model("gpt-24layer.yaml")), 1);
  EXPECT_EQ(g24.num_nodes(), 3 + 24 * 12 + 2);
}

TEST(ModelSpec, BadSpecsAreRefusedByName) {
  EXPECT_THROW(parse_model_spec("name: x\narchitecture: lstm\n"), Error);
  EXPECT_THROW(parse_model_spec("name: x\narchitecture: gpt\nwidth: 100\nheads: 3\n"), Error);
  EXPECT_THROW(parse_model_spec("architecture: gpt\n"), Error);
  EXPECT_THROW(load_model_spec("/nonexistent.yaml"), Error);
}

std::string spec_error(const std::string& yaml) {
  try {
    parse_model_spec(yaml);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

// A number yaml-cpp cannot make an int of (a fraction, one past an int, a word) was read as the default (a
// 12-layer model planned for "layers: 1.5"), and so were a list or a map where text belongs (a ResNet spec
// with "architecture: []" planned as GPT-2); a misspelt field, or one of the other architecture, was ignored;
// a layer count in the millions built a graph for minutes.
TEST(ModelSpec, FieldsAreWholeNumbersInRangeAndKnown) {
  const std::string gpt = "name: x\narchitecture: gpt\n";
  const std::string whole = " must be a whole number up to 2147483647, not ";
  EXPECT_EQ(parse_model_spec(gpt + "layers: 24\n").layers, 24);
  // The file (or the text's label) and the line lead the error.
  EXPECT_EQ(spec_error(gpt + "layers: 1.5\n"),
            "model spec text:3: gpt model spec: field 'layers'" + whole + "'1.5'");
  EXPECT_NE(spec_error(gpt + "layers: 2147483648\n").find("field 'layers'" + whole + "'2147483648'"),
            std::string::npos);
  EXPECT_NE(spec_error(gpt + "width: twelve\n").find("field 'width'" + whole + "'twelve'"),
            std::string::npos);
  EXPECT_NE(
      spec_error(gpt + "width: [1, 2]\n").find(":3: gpt model spec: field 'width' must be a whole number"),
      std::string::npos);
  EXPECT_NE(spec_error(gpt + "layer: 24\n")
                .find(":3: gpt model spec: field 'layer' is not known; did you mean "
                      "'layers'? (known fields: name, architecture, dtype, layers, "),
            std::string::npos);
  EXPECT_NE(spec_error(gpt + "image: 224\n").find("gpt model spec: field 'image' is not known"),
            std::string::npos);
  EXPECT_NE(spec_error(gpt + "layers: 100000000\n").find("layers is 100000000; it must be 1 to 1024"),
            std::string::npos);
  EXPECT_NE(spec_error(gpt + "vocab: 0\n").find("vocab is 0; it must be 1 to"), std::string::npos);
  EXPECT_NE(spec_error(gpt + "dtype: [f32]\n").find("field 'dtype' must be a string"), std::string::npos);
  EXPECT_NE(
      spec_error(gpt + "dtype: f33\n").find(":3: gpt model spec: field 'dtype' is not one partita knows"),
      std::string::npos);
  EXPECT_NE(spec_error("name: x\nlayers: 24\n").find("model spec: field 'architecture' is missing"),
            std::string::npos);
  EXPECT_NE(
      spec_error("name: x\narchitecture: []\n").find(":2: model spec: field 'architecture' must be a string"),
      std::string::npos);
  EXPECT_NE(spec_error("name: x\narchitecture: lstm\n")
                .find(":2: model spec: field 'architecture' must be gpt or "
                      "resnet, not 'lstm'"),
            std::string::npos);
  EXPECT_NE(spec_error("architecture: gpt\n").find("gpt model spec: field 'name' is missing"),
            std::string::npos);
  EXPECT_NE(spec_error("- name: x\n").find("model spec must be a map"), std::string::npos);
  EXPECT_NE(spec_error("name: [x\n").find("model spec text:2: YAML syntax error"), std::string::npos);
  const std::string resnet = "name: r\narchitecture: resnet\n";
  EXPECT_EQ(parse_model_spec(resnet + "blocks: [2, 2]\nwidths: [64, 128]\n").blocks,
            (std::vector<int>{2, 2}));
  EXPECT_NE(spec_error(resnet + "blocks: [2, 2.5]\nwidths: [64, 128]\n")
                .find("field 'blocks' item 2" + whole + "'2.5'"),
            std::string::npos);
  EXPECT_NE(spec_error(resnet + "blocks: [2, [3]]\nwidths: [64, 128]\n")
                .find("field 'blocks' item 2 must be a "
                      "whole number up to 2147483647, not a list"),
            std::string::npos);
  EXPECT_NE(spec_error(resnet + "blocks: 3\nwidths: [64]\n").find("field 'blocks' must be a list"),
            std::string::npos);
  EXPECT_NE(spec_error(resnet + "blocks: [3]\nwidths: [0]\n").find("a stage's width is 0"),
            std::string::npos);
  EXPECT_NE(spec_error(resnet + "block: {}\n").find("field 'block' must be a string"), std::string::npos);
  EXPECT_NE(spec_error(resnet + "block: wide\n")
                .find(":3: resnet model spec: field 'block' must be basic or "
                      "bottleneck, not 'wide'"),
            std::string::npos);
}

// A file's errors name it; range errors (checked on the whole spec) name it too.
TEST(ModelSpec, ErrorsOfAFileNameIt) {
  const std::string path = ::testing::TempDir() + "/partita_model_spec_test.yaml";
  {
    std::ofstream out(path);
    out << "name: x\narchitecture: gpt\nlayers: 0\n";
  }
  try {
    load_model_spec(path);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": model spec 'x': layers is 0; it must be 1 to 1024");
  }
  try {
    load_model_spec(path + ".missing");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot read '" + path + ".missing': no such file");
  }
  std::remove(path.c_str());
}

// Sizes each in range can still make tensors beyond what partita counts in int64 bytes: a batch of 2^31 - 1
// sequences of 2^20 tokens was planned into "node 14 runs before node 13".
TEST(ModelSpec, AGraphBeyondWhatPartitaCountsIsRefusedWithItsSize) {
  const ModelSpec s = parse_model_spec(
      "name: long\narchitecture: gpt\nlayers: 4\nwidth: 4096\nheads: 32\n"
      "seq: 1048576\nvocab: 50000\n");
  try {
    build_model_graph(s, 2147483647);
    ADD_FAILURE() << "built";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model spec 'long' at batch 2147483647 makes tensors of about"),
              std::string::npos)
        << e.what();
  }
  EXPECT_GT(build_model_graph(s, 1).num_nodes(), 0);
  // ResNet-50 at the largest batch is about 2^57 bytes of activations: counted, so built.
  ModelSpec r50 = load_model_spec(model("resnet50.yaml"));
  EXPECT_GT(build_model_graph(r50, 2147483647).num_nodes(), 0);
  r50.image = 16384;
  EXPECT_THROW(build_model_graph(r50, 2147483647), Error);
  EXPECT_GT(build_model_graph(r50, 1).num_nodes(), 0);
}

}  // namespace
}  // namespace partita

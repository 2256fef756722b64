#include "partita/search/model_spec.h"

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
  EXPECT_THROW(parse_model_spec("name: x\nwidth: 100\nheads: 3\n"), Error);
  EXPECT_THROW(parse_model_spec("architecture: gpt\n"), Error);
  EXPECT_THROW(load_model_spec("/nonexistent.yaml"), Error);
}

}  // namespace
}  // namespace partita

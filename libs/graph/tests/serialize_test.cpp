#include "partita/graph/serialize.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "test_graphs.h"

namespace partita {
namespace {

using namespace partita::testing;

// A graph that uses every field: every role, list values, scope/source, all cost statuses, a dtype "other".
Graph sample_graph() {
  Graph g;
  const ValueId x = input(g, {2, 3}, "x");
  const ValueId mask = g.add_input("flag", ValueKind::kScalar);
  const ValueId w = parameter(g, "fc.weight", {4, 3});
  const ValueId rm = parameter(g, "bn.running_mean", {4}, /*requires_grad=*/false);
  const ValueId none_v = none(g);
  const ValueId k = list_constant(g, "[3, 3]");
  const ValueId y = op(g, "aten::linear", {x, w, none_v}, {2, 4});
  Node& lin = g.node(0);
  lin.scope = "fc";
  lin.source = "model.py:12";
  lin.cost = OpCost{Flops(48), Bytes(72), Bytes(32), CostStatus::kEstimated};
  lin.cost.kernel_calls = 3;
  const ValueId list = g.add_value(ValueKind::kList, "parts");
  g.value(list).tensors = {TensorMeta{{2, 4}, DType::kFloat32}, TensorMeta{{4}, DType::kOther}};
  g.add_node("prim::ListConstruct", {y, rm}, {list});
  g.node(1).cost.status = CostStatus::kStructural;
  const ValueId z = op(g, "my::custom", {list, k, mask, y}, {8});
  g.value(input(g, {3, 3}, "mix")).shared = true;  // a user input without the batch
  g.set_outputs({z, y});
  return g;
}

void expect_same(const Graph& a, const Graph& b) {
  ASSERT_EQ(a.num_values(), b.num_values());
  for (int i = 0; i < a.num_values(); ++i) {
    SCOPED_TRACE("value " + std::to_string(i));
    const Value& va = a.value(i);
    const Value& vb = b.value(i);
    EXPECT_EQ(va.id, vb.id);
    EXPECT_EQ(va.name, vb.name);
    EXPECT_EQ(va.kind, vb.kind);
    EXPECT_EQ(va.role, vb.role);
    EXPECT_EQ(va.shared, vb.shared);
    EXPECT_EQ(va.tensors, vb.tensors);
    EXPECT_EQ(va.constant, vb.constant);
    EXPECT_EQ(va.producer, vb.producer);
    EXPECT_EQ(va.users, vb.users);
  }
  ASSERT_EQ(a.num_nodes(), b.num_nodes());
  for (int i = 0; i < a.num_nodes(); ++i) {
    SCOPED_TRACE("node " + std::to_string(i));
    const Node& na = a.node(i);
    const Node& nb = b.node(i);
    EXPECT_EQ(na.id, nb.id);
    EXPECT_EQ(na.op, nb.op);
    EXPECT_EQ(na.inputs, nb.inputs);
    EXPECT_EQ(na.outputs, nb.outputs);
    EXPECT_EQ(na.scope, nb.scope);
    EXPECT_EQ(na.source, nb.source);
    EXPECT_EQ(na.cost.flops, nb.cost.flops);
    EXPECT_EQ(na.cost.bytes_read, nb.cost.bytes_read);
    EXPECT_EQ(na.cost.bytes_written, nb.cost.bytes_written);
    EXPECT_EQ(na.cost.status, nb.cost.status);
    EXPECT_EQ(na.cost.kernel_calls, nb.cost.kernel_calls);
  }
  EXPECT_EQ(a.inputs(), b.inputs());
  ASSERT_EQ(a.parameters().size(), b.parameters().size());
  for (size_t i = 0; i < a.parameters().size(); ++i) {
    EXPECT_EQ(a.parameters()[i].name, b.parameters()[i].name);
    EXPECT_EQ(a.parameters()[i].value, b.parameters()[i].value);
    EXPECT_EQ(a.parameters()[i].requires_grad, b.parameters()[i].requires_grad);
  }
  EXPECT_EQ(a.outputs(), b.outputs());
}

std::string error_of(const Json& j) {
  try {
    graph_from_json(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Serialize, RoundTripKeepsEveryField) {
  const Graph g = sample_graph();
  const Json j = graph_to_json(g);
  const Graph back = graph_from_json(j);
  expect_same(g, back);
  back.check_invariants();
  // Serializing again gives the same text.
  EXPECT_EQ(graph_to_json(back).dump(), j.dump());
  // And through text.
  expect_same(g, graph_from_json(Json::parse(j.dump(2))));
}

TEST(Serialize, WritesHeaderAndReadableEnums) {
  const Json j = graph_to_json(sample_graph());
  EXPECT_EQ(j["format"], "partita.graph");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["values"][0]["role"], "input");
  EXPECT_EQ(j["values"][3]["role"], "buffer");
  EXPECT_EQ(j["values"][5]["constant"], "[3, 3]");
  EXPECT_TRUE(j["values"][0]["constant"].is_null());
  EXPECT_EQ(j["values"][0]["tensors"][0]["dtype"], "f32");
  EXPECT_EQ(j["nodes"][0]["cost"]["status"], "estimated");
  EXPECT_EQ(j["nodes"][2]["cost"]["status"], "no_estimate");
  EXPECT_EQ(j["nodes"][0]["cost"]["bytes_read"], 72);
  EXPECT_EQ(j["parameters"][1]["requires_grad"], false);
}

TEST(Serialize, RejectsWrongFormatAndVersion) {
  Json j = graph_to_json(sample_graph());
  j["format"] = "onnx";
  EXPECT_NE(error_of(j).find("'format'"), std::string::npos) << error_of(j);
  j = graph_to_json(sample_graph());
  j["version"] = 2;
  EXPECT_NE(error_of(j).find("'version' is 2"), std::string::npos) << error_of(j);
  j.erase("version");
  EXPECT_NE(error_of(j).find("missing field 'version'"), std::string::npos) << error_of(j);
}

TEST(Serialize, MissingOrBadFieldsAreNamed) {
  Json j = graph_to_json(sample_graph());
  j["values"][1].erase("kind");
  EXPECT_NE(error_of(j).find("missing field 'values[1].kind'"), std::string::npos) << error_of(j);
  j = graph_to_json(sample_graph());
  j["nodes"][0]["cost"].erase("status");
  EXPECT_NE(error_of(j).find("'nodes[0].cost.status'"), std::string::npos) << error_of(j);
  j = graph_to_json(sample_graph());
  j["nodes"][2]["op"] = 7;
  EXPECT_NE(error_of(j).find("'nodes[2].op' has the wrong type"), std::string::npos) << error_of(j);
  j = graph_to_json(sample_graph());
  j["values"][0]["role"] = "weight";
  EXPECT_NE(error_of(j).find("'values[0].role' has unknown value 'weight'"), std::string::npos);
  j = graph_to_json(sample_graph());
  j["values"][2]["shared"] = true;  // fc.weight
  EXPECT_NE(error_of(j).find("'values[2].shared' must be true or false, on a user input"), std::string::npos)
      << error_of(j);
  j = graph_to_json(sample_graph());
  j["values"][0]["tensors"][0]["dtype"] = "f99";
  EXPECT_NE(error_of(j).find("values[0].tensors[0].dtype"), std::string::npos) << error_of(j);
  j = graph_to_json(sample_graph());
  j.erase("parameters");
  EXPECT_NE(error_of(j).find("missing field 'parameters'"), std::string::npos);
  j = graph_to_json(sample_graph());
  j["nodes"][0]["cost"]["kernel_calls"] = 0;
  EXPECT_NE(error_of(j).find("'nodes[0].cost.kernel_calls' is 0"), std::string::npos) << error_of(j);
}

// A graph written before kernel_calls existed reads as one call per op.
TEST(Serialize, AGraphWithoutKernelCallsCountsOnePerOp) {
  Json j = graph_to_json(sample_graph());
  EXPECT_EQ(j["nodes"][0]["cost"]["kernel_calls"], 3);
  j["nodes"][0]["cost"].erase("kernel_calls");
  EXPECT_EQ(graph_from_json(j).node(0).cost.kernel_calls, 1);
}

TEST(Serialize, RejectsInconsistentLinksAndIds) {
  Json j = graph_to_json(sample_graph());
  j["values"][0]["users"] = Json::array();
  EXPECT_NE(error_of(j).find("'values[0].users' disagrees"), std::string::npos) << error_of(j);
  j = graph_to_json(sample_graph());
  j["nodes"][1]["inputs"][0] = 99;
  EXPECT_NE(error_of(j).find("'nodes[1].inputs' names unknown value 99"), std::string::npos) << error_of(j);
  j = graph_to_json(sample_graph());
  j["outputs"][0] = -4;
  EXPECT_NE(error_of(j).find("'outputs' names unknown value -4"), std::string::npos) << error_of(j);
}

TEST(Serialize, EmptyGraphRoundTrips) {
  const Graph empty;
  const Graph back = graph_from_json(graph_to_json(empty));
  EXPECT_EQ(back.num_nodes(), 0);
  EXPECT_EQ(back.num_values(), 0);
}

}  // namespace
}  // namespace partita

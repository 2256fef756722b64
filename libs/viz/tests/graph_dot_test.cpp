#include "partita/viz/graph_dot.h"

#include <gtest/gtest.h>

namespace partita {

TEST(GraphDot, DrawsNodesEdgesAndInputs) {
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{2, 4}, DType::kFloat32}};
  const ValueId w = g.add_parameter("fc.weight", true);
  const ValueId y = g.add_value(ValueKind::kTensor, "y");
  const NodeId lin = g.add_node("aten::linear", {x, w}, {y});
  g.node(lin).cost = OpCost{Flops(64), Bytes(0), Bytes(0), CostStatus::kEstimated};
  g.node(lin).scope = "fc";
  const ValueId z = g.add_value(ValueKind::kTensor, "z");
  g.add_node("aten::relu", {y}, {z});
  const std::string dot = graph_to_dot(g);
  EXPECT_NE(dot.find("digraph partita"), std::string::npos);
  EXPECT_NE(dot.find("v0 -> n0;"), std::string::npos);
  EXPECT_NE(dot.find("n0 -> n1;"), std::string::npos);
  EXPECT_NE(dot.find("aten::linear\\nfc"), std::string::npos);
  EXPECT_NE(dot.find("64 FLOP"), std::string::npos);
  EXPECT_NE(dot.find("no estimate"), std::string::npos);  // relu has no cost set here
  EXPECT_EQ(graph_to_dot(g, DotOptions{1}).find("n0 -> n1"), std::string::npos);
}

}  // namespace partita

#include "partita/graph/constant_value.h"

#include <gtest/gtest.h>

#include "test_graphs.h"

namespace partita {
namespace {

using namespace partita::testing;
using Ints = std::vector<int64_t>;

TEST(ConstantValue, ParsesPrintedForms) {
  Graph g;
  const ValueId three = int_constant(g, "3");
  const ValueId neg = int_constant(g, "-1");
  const ValueId list = list_constant(g, "[3, 3]");
  const ValueId empty = list_constant(g, "[]");
  const ValueId f = g.add_constant(ValueKind::kScalar, "False");
  const ValueId t = g.add_constant(ValueKind::kScalar, "True");
  const ValueId eps = g.add_constant(ValueKind::kScalar, "1.0000000000000001e-05");
  const ValueId str = g.add_constant(ValueKind::kOther, "'ij,jk->ik'");
  const ValueId n = none(g);
  EXPECT_EQ(constant_int(g, three), 3);
  EXPECT_EQ(constant_int(g, neg), -1);
  EXPECT_EQ(constant_int(g, list), std::nullopt);
  EXPECT_EQ(constant_int_list(g, list), Ints({3, 3}));
  EXPECT_EQ(constant_int_list(g, three), Ints({3}));
  EXPECT_EQ(constant_int_list(g, empty), Ints{});
  EXPECT_EQ(constant_bool(g, f), false);
  EXPECT_EQ(constant_bool(g, t), true);
  EXPECT_EQ(constant_bool(g, n), std::nullopt);
  EXPECT_DOUBLE_EQ(*constant_double(g, eps), 1e-5);
  EXPECT_EQ(constant_double(g, str), std::nullopt);
  EXPECT_EQ(constant_string(g, str), "ij,jk->ik");
  EXPECT_TRUE(is_none(g, n));
  EXPECT_FALSE(is_none(g, three));
}

TEST(ConstantValue, LooksThroughListConstructOfConstants) {
  Graph g;
  const ValueId x = input(g, {8, 4});
  const ValueId a = int_constant(g, "8");
  const ValueId b = int_constant(g, "-1");
  const ValueId list = g.add_value(ValueKind::kList, "");
  g.add_node("prim::ListConstruct", {a, b}, {list});
  EXPECT_EQ(constant_int_list(g, list), Ints({8, -1}));
  // A list with a non-constant element is not constant.
  const ValueId size = g.add_value(ValueKind::kScalar, "");
  g.add_node("aten::size", {x, int_constant(g, "0")}, {size});
  const ValueId dyn = g.add_value(ValueKind::kList, "");
  g.add_node("prim::ListConstruct", {size, b}, {dyn});
  EXPECT_EQ(constant_int_list(g, dyn), std::nullopt);
  EXPECT_EQ(constant_int_list(g, x), std::nullopt);
}

TEST(ConstantValue, RejectsMalformedLists) {
  EXPECT_EQ(parse_int_list("[1, x]"), std::nullopt);
  EXPECT_EQ(parse_int_list("[1, 2"), std::nullopt);
  EXPECT_EQ(parse_int_list("1.5"), std::nullopt);
  EXPECT_EQ(parse_int_list(" [ 1 ,2 ] "), Ints({1, 2}));
}

}  // namespace
}  // namespace partita

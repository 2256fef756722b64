#include "partita/graph/op_names.h"

#include <gtest/gtest.h>

namespace partita {

TEST(OpNames, InPlaceOpsEndInOneUnderscoreAndDunderOpsDoNot) {
  for (const char* op : {"aten::add_", "aten::relu_", "aten::copy_", "aten::embedding_renorm_", "mul_"})
    EXPECT_TRUE(is_in_place_op(op)) << op;
  for (const char* op : {"aten::add", "aten::__and__", "aten::__getitem__", "prim::ListConstruct", "_", ""})
    EXPECT_FALSE(is_in_place_op(op)) << op;
}

TEST(OpNames, FunctionalOpDropsOnlyTheInPlaceUnderscore) {
  EXPECT_EQ(functional_op("aten::relu_"), "aten::relu");
  EXPECT_EQ(functional_op("add_"), "add");
  EXPECT_EQ(functional_op("aten::relu"), "aten::relu");
  EXPECT_EQ(functional_op("aten::__and__"), "aten::__and__");
  EXPECT_EQ(functional_op("_"), "_");
}

}  // namespace partita

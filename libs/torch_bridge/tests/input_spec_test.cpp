#include "partita/torch_bridge/input_spec.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "partita/torch_bridge/model.h"

namespace partita {

TEST(InputSpec, ParsesShapesDtypesAndHigh) {
  const InputSpec a = parse_input_spec("32x3x224x224");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{32, 3, 224, 224}));
  EXPECT_EQ(a.dtype, DType::kFloat32);
  const InputSpec b = parse_input_spec("8x128:i64:50257");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{8, 128}));
  EXPECT_EQ(b.dtype, DType::kInt64);
  EXPECT_EQ(b.high, 50257);
  EXPECT_EQ(b.to_string(), "8x128:i64:50257");
  EXPECT_EQ(parse_input_spec("4x4:bf16").dtype, DType::kBFloat16);
  EXPECT_EQ(with_batch({a}, 5)[0].shape[0], 5);
}

// PyTorch's names for a dtype, as a user copies them from the model, mean what the short names mean.
TEST(InputSpec, TakesPyTorchsDtypeNames) {
  const std::pair<const char*, DType> names[] = {
      {"float32", DType::kFloat32},   {"torch.float", DType::kFloat32},   {"half", DType::kFloat16},
      {"bfloat16", DType::kBFloat16}, {"torch.float64", DType::kFloat64}, {"double", DType::kFloat64},
      {"int64", DType::kInt64},       {"torch.long", DType::kInt64},      {"int32", DType::kInt32},
      {"torch.bool", DType::kBool}};
  for (const auto& [name, dtype] : names) {
    EXPECT_EQ(parse_input_spec(std::string("2x3:") + name).dtype, dtype) << name;
  }
  EXPECT_EQ(parse_input_spec("8x5:long:50").to_string(), "8x5:i64:50");
}

TEST(InputSpec, RejectsMalformedWithTheText) {
  for (const char* bad :
       {"", "8x", "x8", "8xax3", "0x3", "-1x3", "8x3:f33", "8x3:f32:10", "8:i64:0", "8:i64:1:2", "8x3:i8",
        "8x3:torch.f32", "8x3:int8", "9999999999x9999999999x99999"}) {
    try {
      parse_input_spec(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

// Every dtype the parser accepts is one make_inputs draws (i8 was parsed, then failed at the first run).
TEST(InputSpec, AcceptedDtypesAreTheOnesExampleInputsAreDrawnIn) {
  for (const char* dtype : {"f32", "f16", "bf16", "f64", "i64", "i32", "bool"}) {
    const InputSpec spec = parse_input_spec(std::string("2x3:") + dtype);
    EXPECT_TRUE(input_dtype_supported(spec.dtype)) << dtype;
    EXPECT_EQ(make_inputs({spec})[0].sizes(), (c10::IntArrayRef{2, 3})) << dtype;
  }
}

// An input larger than the memory this machine has free is refused with its size, before any allocation.
TEST(InputSpec, AnInputLargerThanThisMachinesMemoryIsRefused) {
  try {
    make_inputs({parse_input_spec("99999999999999x32")});
    ADD_FAILURE() << "drew a 11 PiB input";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the inputs 99999999999999x32 take 11.37 PiB, more than the"),
              std::string::npos)
        << e.what();
  }
}

TEST(InputSpec, EveryInputMustCarryTheFirstInputsBatch) {
  const auto specs = [](std::vector<const char*> texts) {
    std::vector<InputSpec> out;
    for (const char* t : texts) out.push_back(parse_input_spec(t));
    return out;
  };
  EXPECT_NO_THROW(check_inputs_share_batch(specs({"8x16", "8x5:i64:100", "8"})));
  try {
    check_inputs_share_batch(specs({"8x16", "8x4", "16x16"}));
    ADD_FAILURE() << "accepted an input without the batch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--input 3 is 16x16 but the batch is 8 (--input 1)"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("as 16x16:shared"), std::string::npos) << e.what();
  }
}

// ":shared" marks an input without the batch (a mask, a matrix): it keeps its shape at every batch size and
// may come in any place, first too; one input at least must carry the batch.
TEST(InputSpec, ASharedInputHasNoBatch) {
  const InputSpec mask = parse_input_spec("16x16:bool:shared");
  EXPECT_TRUE(mask.shared);
  EXPECT_EQ(mask.dtype, DType::kBool);
  EXPECT_EQ(mask.to_string(), "16x16:bool:shared");
  const InputSpec ids = parse_input_spec("4x4:i64:9:shared");
  EXPECT_EQ(ids.high, 9);
  EXPECT_EQ(ids.to_string(), "4x4:i64:9:shared");
  EXPECT_EQ(parse_input_spec("3x5:shared").to_string(), "3x5:shared");
  EXPECT_FALSE(parse_input_spec("8x16").shared);
  const std::vector<InputSpec> specs = {parse_input_spec("8x16"), parse_input_spec("16x16:shared"),
                                        parse_input_spec("8x3")};
  EXPECT_NO_THROW(check_inputs_share_batch(specs));
  const auto rebatched = with_batch(specs, 5);
  EXPECT_EQ(rebatched[0].shape, (std::vector<int64_t>{5, 16}));
  EXPECT_EQ(rebatched[1].shape, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(rebatched[2].shape, (std::vector<int64_t>{5, 3}));
  // A shared first input (the mask first): the batch comes from the first batched input.
  const std::vector<InputSpec> mask_first = {specs[1], specs[0], specs[2]};
  EXPECT_NO_THROW(check_inputs_share_batch(mask_first));
  EXPECT_EQ(batch_input_index(mask_first), 1u);
  EXPECT_EQ(spec_batch(mask_first), 8);
  EXPECT_EQ(spec_batch(specs), 8);
  try {
    check_inputs_share_batch({specs[1], specs[0], parse_input_spec("4x3")});
    ADD_FAILURE() << "accepted a third input with another batch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--input 3 is 4x3 but the batch is 8 (--input 2)"),
              std::string::npos)
        << e.what();
  }
  try {
    check_inputs_share_batch({specs[1], parse_input_spec("4x4:shared")});
    ADD_FAILURE() << "accepted inputs that are all shared";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("every --input is shared (all 2): one input must carry the batch"),
              std::string::npos)
        << e.what();
  }
  for (const char* bad : {"shared", "8x16:shared:f32", "8x16:f32:shared:shared", "8:i64:3:4:shared"}) {
    EXPECT_THROW(parse_input_spec(bad), Error) << bad;
  }
}

}  // namespace partita

#include "partita/graph/tensor_meta.h"

#include <array>

#include "partita/core/error.h"

namespace partita {

namespace {
struct DTypeInfo {
  DType dtype;
  std::string_view name;
  int64_t size;
};
constexpr std::array<DTypeInfo, 11> kDTypes = {{
    {DType::kFloat32, "f32", 4},
    {DType::kFloat16, "f16", 2},
    {DType::kBFloat16, "bf16", 2},
    {DType::kFloat64, "f64", 8},
    {DType::kInt64, "i64", 8},
    {DType::kInt32, "i32", 4},
    {DType::kInt16, "i16", 2},
    {DType::kInt8, "i8", 1},
    {DType::kUInt8, "u8", 1},
    {DType::kBool, "bool", 1},
    {DType::kOther, "other", 0},
}};

// PyTorch's own names (torch.float32, torch.long, ...), with or without "torch.", as written in a model.
struct DTypeAlias {
  std::string_view name;
  DType dtype;
};
constexpr std::array<DTypeAlias, 15> kTorchNames = {{
    {"float32", DType::kFloat32},
    {"float", DType::kFloat32},
    {"float16", DType::kFloat16},
    {"half", DType::kFloat16},
    {"bfloat16", DType::kBFloat16},
    {"float64", DType::kFloat64},
    {"double", DType::kFloat64},
    {"int64", DType::kInt64},
    {"long", DType::kInt64},
    {"int32", DType::kInt32},
    {"int", DType::kInt32},
    {"int16", DType::kInt16},
    {"short", DType::kInt16},
    {"int8", DType::kInt8},
    {"uint8", DType::kUInt8},
}};
}  // namespace

int64_t dtype_size(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].size; }
std::string_view dtype_name(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].name; }

DType parse_dtype(std::string_view name) {
  for (const auto& info : kDTypes) {
    if (info.name == name && info.dtype != DType::kOther) return info.dtype;
  }
  std::string_view bare = name;
  if (bare.substr(0, 6) == "torch.") bare.remove_prefix(6);
  if (bare == "bool") return DType::kBool;
  for (const auto& alias : kTorchNames) {
    if (alias.name == bare) return alias.dtype;
  }
  PARTITA_FAIL("unknown dtype '", name, "': use one of f32, f16, bf16, f64, i64, i32, i16, i8, u8, bool");
}

bool is_floating(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16 ||
         dtype == DType::kFloat64;
}

int64_t TensorMeta::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorMeta::to_string() const {
  std::string s(dtype_name(dtype));
  s += '[';
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  s += ']';
  return s;
}

}  // namespace partita

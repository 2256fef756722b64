#pragma once
// Tensor metadata: what a value looks like without its data.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "partita/core/units.h"

namespace partita {

enum class DType {
  kFloat32,
  kFloat16,
  kBFloat16,
  kFloat64,
  kInt64,
  kInt32,
  kInt16,
  kInt8,
  kUInt8,
  kBool,
  kOther
};

// Bytes per element (kOther: 0).
int64_t dtype_size(DType dtype);
// Short names used on the command line and in JSON: f32 f16 bf16 f64 i64 i32 i16 i8 u8 bool other.
std::string_view dtype_name(DType dtype);
// Inverse of dtype_name, also taking PyTorch's names (float32, bfloat16, long, torch.int64, ...); throws
// partita::Error naming the accepted spellings.
DType parse_dtype(std::string_view name);
bool is_floating(DType dtype);

struct TensorMeta {
  std::vector<int64_t> shape;
  DType dtype = DType::kFloat32;

  int64_t numel() const;
  Bytes bytes() const { return Bytes(numel() * dtype_size(dtype)); }
  std::string to_string() const;  // "f32[8, 3, 224, 224]"
  friend bool operator==(const TensorMeta&, const TensorMeta&) = default;
};

}  // namespace partita

#pragma once
// `--input SPEC`: DIMxDIMx...[:DTYPE[:HIGH]], e.g. "32x3x224x224", "8x128:i64:50257" (integers in [0, HIGH)).
// Torch-free so the planning side and the command line can parse it.
#include <cstdint>
#include <string>
#include <vector>

#include "partita/graph/tensor_meta.h"

namespace partita {

struct InputSpec {
  std::vector<int64_t> shape;
  DType dtype = DType::kFloat32;
  int64_t high =
      0;  // integer inputs: values drawn in [0, high); 0 = dtype default (2 for bool, 100 otherwise)

  std::string to_string() const;
  TensorMeta meta() const { return TensorMeta{shape, dtype}; }
};

// Throws partita::Error with the offending text and the accepted syntax.
InputSpec parse_input_spec(const std::string& text);

// The same specs with the leading (batch) dimension replaced.
std::vector<InputSpec> with_batch(std::vector<InputSpec> specs, int64_t batch);

}  // namespace partita

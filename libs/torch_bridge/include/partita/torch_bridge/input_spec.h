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

// Plans split a batch along dim 0 of every input, so every input must have the first one's batch there (an
// input without one, a shared mask or matrix, is not supported: it belongs in the model as a buffer). Throws
// partita::Error naming the first input that differs.
void check_inputs_share_batch(const std::vector<InputSpec>& specs);

}  // namespace partita

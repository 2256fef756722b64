#pragma once
// `--input SPEC`: DIMxDIMx...[:DTYPE[:HIGH]][:shared], e.g. "32x3x224x224", "8x128:i64:50257" (integers in
// [0, HIGH)), "128x128:bool:shared" (an input without the batch: one tensor every sample uses, such as an
// attention mask or a matrix; plans hand it whole to every device, replica and microbatch).
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
  bool shared = false;  // no batch dimension: the same tensor for every sample, never split

  std::string to_string() const;
  TensorMeta meta() const { return TensorMeta{shape, dtype}; }
  friend bool operator==(const InputSpec&, const InputSpec&) = default;
};

// The dtypes make_inputs can draw example values of, as --input spells them.
inline constexpr const char* kInputDtypes = "f32, f16, bf16, f64, i64, i32 or bool";
bool input_dtype_supported(DType d);

// Throws partita::Error with the offending text and the accepted syntax (a shape of more elements than an
// int64 counts is refused here; one larger than this machine's memory by make_inputs).
InputSpec parse_input_spec(const std::string& text);

// The inputs as errors name them: "f32[4, 3, 32], i64[4, 16]".
std::string inputs_text(const std::vector<InputSpec>& specs);

// The same specs with the leading (batch) dimension of each input that is not shared replaced.
std::vector<InputSpec> with_batch(std::vector<InputSpec> specs, int64_t batch);

// The input that carries the batch: the first that is not shared (a model may take its mask first). Throws
// partita::Error when there is no input or every input is shared.
size_t batch_input_index(const std::vector<InputSpec>& specs);
// That input's dim 0: the batch the specs give (0 for a 0-d input).
int64_t spec_batch(const std::vector<InputSpec>& specs);

// Plans split a batch along dim 0 of every input that is not shared, so each of those must have the same
// batch there, and at least one must carry it. Throws partita::Error naming the first input that differs
// (and saying that an input without the batch is written with ":shared").
void check_inputs_share_batch(const std::vector<InputSpec>& specs);

}  // namespace partita

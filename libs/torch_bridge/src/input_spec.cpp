#include "partita/torch_bridge/input_spec.h"

#include <charconv>

#include "partita/core/error.h"

namespace partita {

namespace {
constexpr const char* kSyntax =
    "expected DIMxDIMx...[:DTYPE[:HIGH]][:shared] such as 32x3x224x224, 8x128:i64:50257 or "
    "128x128:bool:shared";

int64_t parse_positive(const std::string& text, std::string_view part, const char* what) {
  int64_t v = 0;
  const auto* end = part.data() + part.size();
  auto [ptr, ec] = std::from_chars(part.data(), end, v);
  PARTITA_CHECK(ec == std::errc() && ptr == end && v > 0, "bad --input '", text, "': ", what, " '", part,
                "' is not a positive integer; ", kSyntax);
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}
}  // namespace

bool input_dtype_supported(DType d) {
  return d == DType::kFloat32 || d == DType::kFloat16 || d == DType::kBFloat16 || d == DType::kFloat64 ||
         d == DType::kInt64 || d == DType::kInt32 || d == DType::kBool;
}

InputSpec parse_input_spec(const std::string& text) {
  PARTITA_CHECK(!text.empty(), "empty --input: ", kSyntax);
  auto fields = split(text, ':');
  InputSpec spec;
  if (fields.size() >= 2 && fields.back() == "shared") {
    spec.shared = true;
    fields.pop_back();
  }
  PARTITA_CHECK(fields.size() <= 3, "bad --input '", text, "': too many ':' fields; ", kSyntax);
  int64_t elements = 1;
  for (std::string_view dim : split(fields[0], 'x')) {
    spec.shape.push_back(parse_positive(text, dim, "dimension"));
    PARTITA_CHECK(!__builtin_mul_overflow(elements, spec.shape.back(), &elements), "bad --input '", text,
                  "': more elements than a tensor can hold; use a smaller shape");
  }
  if (fields.size() >= 2) {
    bool known = true;
    try {
      spec.dtype = parse_dtype(fields[1]);
    } catch (const Error&) {
      known = false;
    }
    PARTITA_CHECK(known && input_dtype_supported(spec.dtype), "bad --input '", text,
                  "': ", known ? "partita draws no example inputs of dtype '" : "unknown dtype '", fields[1],
                  "'; use ", kInputDtypes);
  }
  if (fields.size() == 3) {
    PARTITA_CHECK(!is_floating(spec.dtype), "bad --input '", text,
                  "': HIGH applies to integer inputs only; drop it or use :i64:HIGH");
    spec.high = parse_positive(text, fields[2], "HIGH");
  }
  return spec;
}

std::string InputSpec::to_string() const {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  if (dtype != DType::kFloat32) s += ":" + std::string(dtype_name(dtype));
  if (high > 0) s += ":" + std::to_string(high);
  if (shared) s += ":shared";
  return s;
}

size_t batch_input_index(const std::vector<InputSpec>& specs) {
  PARTITA_CHECK(!specs.empty(), "no --input given; give one per forward() argument");
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!specs[i].shared) return i;
  }
  PARTITA_FAIL("every --input is shared (",
               specs.size() == 1 ? specs[0].to_string() : "all " + std::to_string(specs.size()),
               "): one input must carry the batch in dim 0 for partita to split; "
               "drop ':shared' from the batched one");
}

int64_t spec_batch(const std::vector<InputSpec>& specs) {
  const InputSpec& s = specs[batch_input_index(specs)];
  return s.shape.empty() ? 0 : s.shape[0];
}

void check_inputs_share_batch(const std::vector<InputSpec>& specs) {
  if (specs.empty()) return;
  const size_t carrier = batch_input_index(specs);
  if (specs[carrier].shape.empty()) return;
  const int64_t batch = specs[carrier].shape[0];
  for (size_t i = carrier + 1; i < specs.size(); ++i) {
    if (specs[i].shared) continue;
    PARTITA_CHECK(!specs[i].shape.empty() && specs[i].shape[0] == batch, "--input ", i + 1, " is ",
                  specs[i].to_string(), " but the batch is ", batch, " (--input ", carrier + 1, ")",
                  ": partita splits the batch along dim 0 of every input; give it the batch in dim 0, or "
                  "write an input without the batch (a mask or matrix every sample uses) as ",
                  specs[i].to_string(), ":shared");
  }
}

std::string inputs_text(const std::vector<InputSpec>& specs) {
  std::string text;
  for (const auto& s : specs) text += (text.empty() ? "" : ", ") + s.meta().to_string();
  return text;
}

std::vector<InputSpec> with_batch(std::vector<InputSpec> specs, int64_t batch) {
  for (auto& s : specs) {
    if (!s.shape.empty() && !s.shared) s.shape[0] = batch;
  }
  return specs;
}

}  // namespace partita

#pragma once
// Facts read off an operator's qualified name ("aten::add_").
#include <string_view>

namespace partita {

// Whether the op updates its first argument in place and returns it: ATen's trailing underscore (add_, mul_,
// relu_), not the dunder ops (__and__, __getitem__, __or__), which return a new value.
inline bool is_in_place_op(std::string_view op) {
  return op.size() > 1 && op.back() == '_' && !op.ends_with("__");
}

// The op an in-place variant updates with ("aten::relu_" -> "aten::relu"; "add_" -> "add"): it costs and
// behaves like that functional op. Every other name, dunder ops included, is returned as it is.
inline std::string_view functional_op(std::string_view op) {
  if (is_in_place_op(op)) op.remove_suffix(1);
  return op;
}

}  // namespace partita

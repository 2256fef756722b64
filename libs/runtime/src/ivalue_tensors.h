#pragma once
// The tensors inside a graph value (a tensor, or lists and tuples of them, nested): values that cross stages
// or devices are moved, detached and given gradients tensor by tensor. Shared by the pipeline engine and the
// branch engine.
#include <vector>

#include <ATen/core/ivalue.h>

namespace partita::detail {

// Every tensor inside `iv` (undefined ones included), depth first in element order.
inline void flatten_tensors_into(const c10::IValue& iv, std::vector<at::Tensor>& out) {
  if (iv.isTensor()) {
    out.push_back(iv.toTensor());
  } else if (iv.isList()) {
    const c10::List<c10::IValue> list = iv.toList();
    for (size_t i = 0; i < list.size(); ++i) flatten_tensors_into(list.get(i), out);
  } else if (iv.isTuple()) {
    for (const auto& e : iv.toTupleRef().elements()) flatten_tensors_into(e, out);
  }
}

inline std::vector<at::Tensor> flatten_tensors(const c10::IValue& iv) {
  std::vector<at::Tensor> out;
  flatten_tensors_into(iv, out);
  return out;
}

// Rebuilds `iv` with every tensor inside it replaced by f(tensor), in flatten_tensors' order.
template <typename F>
c10::IValue map_tensors(const c10::IValue& iv, const F& f) {
  if (iv.isTensor()) return f(iv.toTensor());
  if (iv.isList()) {
    const c10::List<c10::IValue> list = iv.toList();
    c10::impl::GenericList out(list.elementType());
    out.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) out.push_back(map_tensors(list.get(i), f));
    return out;
  }
  if (iv.isTuple()) {
    std::vector<c10::IValue> elements;
    for (const auto& e : iv.toTupleRef().elements()) elements.push_back(map_tensors(e, f));
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  return iv;
}

}  // namespace partita::detail

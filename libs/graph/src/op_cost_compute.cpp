// Ops whose cost needs a shape formula. Argument positions follow the TorchScript schemas of torch 1.13.
#include <map>
#include <string>
#include <unordered_map>

#include "op_cost_internal.h"
#include "partita/graph/constant_value.h"

namespace partita::op_cost_detail {

namespace {

using Cost = std::optional<OpCost>;

double prod(const std::vector<int64_t>& dims, size_t from = 0) {
  double p = 1;
  for (size_t i = from; i < dims.size(); ++i) p *= static_cast<double>(dims[i]);
  return p;
}

bool has_bias(const Graph& g, const Node& n, size_t i) {
  return i < n.inputs.size() && !is_none(g, n.inputs[i]);
}

// 2 * (multiply-adds per output element) * out_numel; for a transposed convolution each *input* element is
// scattered into weight.shape[1:] outputs, so the product runs over the input instead.
Cost convolution(const Graph& g, const Node& n, bool transposed) {
  const TensorMeta* x = input_meta(g, n, 0);
  const TensorMeta* w = input_meta(g, n, 1);
  const TensorMeta* out = output_meta(g, n);
  if (!x || !w || !out || w->shape.size() < 2) return std::nullopt;
  const double macs = (transposed ? numel(*x) : numel(*out)) * prod(w->shape, 1);
  return estimated(g, n, 2 * macs + (has_bias(g, n, 2) ? numel(*out) : 0));
}

// _convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, ...)
// and convolution(...) share the position of `transposed`.
Cost generic_convolution(const Graph& g, const Node& n) {
  const auto transposed = n.inputs.size() > 6 ? constant_bool(g, n.inputs[6]) : std::nullopt;
  if (!transposed) return std::nullopt;
  return convolution(g, n, *transposed);
}
Cost conv(const Graph& g, const Node& n) { return convolution(g, n, false); }
Cost conv_transpose(const Graph& g, const Node& n) { return convolution(g, n, true); }

// out = a @ b (+ bias): K is the last dim of the first operand, which also covers 1-D operands
// (vector @ matrix: out [N], K = a[0]; dot: out numel 1).
Cost matmul_like(const Graph& g, const Node& n, size_t a_index, bool adds_bias) {
  const TensorMeta* a = input_meta(g, n, a_index);
  const TensorMeta* out = output_meta(g, n);
  if (!a || !out || a->shape.empty()) return std::nullopt;
  const double k = static_cast<double>(a->shape.back());
  return estimated(g, n, 2 * numel(*out) * k + (adds_bias ? numel(*out) : 0));
}
Cost matmul(const Graph& g, const Node& n) { return matmul_like(g, n, 0, false); }
Cost linear(const Graph& g, const Node& n) { return matmul_like(g, n, 0, has_bias(g, n, 2)); }
// addmm(self, mat1, mat2, beta, alpha), baddbmm(self, batch1, batch2, beta, alpha): the add is 1 per element.
Cost addmm(const Graph& g, const Node& n) { return matmul_like(g, n, 1, true); }

// scaled_dot_product_attention(q, k, v, ...): q [..., L, E], k [..., S, E], v [..., S, Ev].
Cost attention(const Graph& g, const Node& n) {
  const TensorMeta* q = input_meta(g, n, 0);
  const TensorMeta* k = input_meta(g, n, 1);
  const TensorMeta* v = input_meta(g, n, 2);
  if (!q || !k || !v || q->shape.size() < 2 || k->shape.size() < 2 || v->shape.empty()) return std::nullopt;
  const double batch = prod(std::vector<int64_t>(q->shape.begin(), q->shape.end() - 2));
  const double l = static_cast<double>(q->shape[q->shape.size() - 2]);
  const double s = static_cast<double>(k->shape[k->shape.size() - 2]);
  const double e = static_cast<double>(q->shape.back());
  const double ev = static_cast<double>(v->shape.back());
  return estimated(g, n, 2 * batch * l * s * (e + ev));
}

// torch.nn's fused inference kernels count what the ops they replace would: projections as linear (2 per
// multiply-add, 1 per bias element), scores and weighted values as matmuls, softmax 5 and layer norm 8 per
// element, 1 per element for the scaling of q, residual adds and the activation.

// Multi-head attention of q [B, L, E] on k, v [B, S, E] with h heads, the projections included.
double mha_flops(double b, double l, double s, double e, double h) {
  const double projections = 2 * b * l * e * e + b * l * e          // q
                             + 2 * (2 * b * s * e * e + b * s * e)  // k, v
                             + 2 * b * l * e * e + b * l * e;       // output
  return projections + b * l * e + 4 * b * l * s * e + 5 * b * h * l * s;
}

// _native_multi_head_attention(query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight,
// proj_bias, mask, need_weights, average_attn_weights, mask_type): nn.MultiheadAttention's fast path.
Cost native_multi_head_attention(const Graph& g, const Node& n) {
  const TensorMeta* q = input_meta(g, n, 0);
  const TensorMeta* k = input_meta(g, n, 1);
  const auto heads = n.inputs.size() > 4 ? constant_int(g, n.inputs[4]) : std::nullopt;
  if (!q || !k || !heads || q->shape.size() != 3 || k->shape.size() != 3) return std::nullopt;
  const auto d = [](const TensorMeta* t, size_t i) { return static_cast<double>(t->shape[i]); };
  return estimated(g, n, mha_flops(d(q, 0), d(q, 1), d(k, 1), d(q, 2), static_cast<double>(*heads)));
}

// _transformer_encoder_layer_fwd(src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias,
// use_gelu, norm_first, eps, norm_weight_1, norm_bias_1, norm_weight_2, norm_bias_2, ffn_weight_1,
// ffn_bias_1, ffn_weight_2, ffn_bias_2, mask, mask_type): nn.TransformerEncoderLayer's fast path, src
// [B, T, E] (batch first), self-attention, two layer norms, two residual adds and a feed-forward of
// ffn_weight_1's rows.
Cost transformer_encoder_layer(const Graph& g, const Node& n) {
  const TensorMeta* x = input_meta(g, n, 0);
  const TensorMeta* ffn = input_meta(g, n, 14);
  const auto heads = n.inputs.size() > 2 ? constant_int(g, n.inputs[2]) : std::nullopt;
  if (!x || !ffn || !heads || x->shape.size() != 3 || ffn->shape.size() != 2) return std::nullopt;
  const double b = static_cast<double>(x->shape[0]), t = static_cast<double>(x->shape[1]),
               e = static_cast<double>(x->shape[2]), f = static_cast<double>(ffn->shape[0]);
  const double tokens = b * t;
  const double feed_forward = 2 * tokens * e * f + tokens * f     // first linear
                              + tokens * f                        // activation
                              + 2 * tokens * f * e + tokens * e;  // second linear
  return estimated(g, n,
                   mha_flops(b, t, t, e, static_cast<double>(*heads)) + feed_forward + 2 * tokens * e  // adds
                       + 2 * 8 * tokens * e);  // norms
}

// The element tensors of a list argument: from the list value itself, or from its ListConstruct's inputs.
std::vector<TensorMeta> list_elements(const Graph& g, ValueId list) {
  const Value& v = g.value(list);
  if (!v.tensors.empty() || v.producer == kNoNode) return v.tensors;
  std::vector<TensorMeta> out;
  for (ValueId in : g.node(v.producer).inputs) {
    if (const TensorMeta* m = g.value(in).meta()) out.push_back(*m);
  }
  return out;
}

// Recurrent layers (aten::lstm, gru, rnn_tanh, rnn_relu), counted as the cells they run would be, unrolled:
// at every token (batch x steps) of every layer and direction, each weight matrix is a linear (2 per
// multiply-add, 1 per bias element), the input and hidden gate pre-activations are added (1 per gate
// element), and the cell's element-wise math costs, per hidden unit, what the element-wise ops would:
// sigmoid and tanh 4, add, sub and mul 1. LSTM: 3 sigmoids, 2 tanh, c = f*c + i*g, h = o*tanh(c) = 24; GRU:
// 2 sigmoids, 1 tanh, r*h_n, h = (1-z)*n + z*h = 17; Elman: the activation (tanh 4, relu 1). Schemas:
// lstm.input(input, hx[], params[], has_biases, num_layers, dropout, train, bidirectional, batch_first) and
// lstm.data(data, batch_sizes, hx[], params[], ...); gru and rnn_* take one hx tensor. The params list sits
// at 2 (.input) or 3 (.data: packed, data [tokens, features]); tokens = numel(input) / features either way.
// LSTMs with projections (proj_size) get no estimate.
Cost recurrent(const Graph& g, const Node& n, int gates, double per_unit) {
  const TensorMeta* x = input_meta(g, n, 0);
  if (!x || x->shape.empty() || x->shape.back() <= 0) return std::nullopt;
  const double tokens = numel(*x) / static_cast<double>(x->shape.back());
  for (size_t at : {size_t{2}, size_t{3}}) {
    if (n.inputs.size() < at + 6) continue;
    const std::vector<TensorMeta> params = list_elements(g, n.inputs[at]);
    if (params.empty() || params.front().shape.size() != 2) continue;  // hx, not the weights
    const auto layers = constant_int(g, n.inputs[at + 2]);
    const auto bidirectional = constant_bool(g, n.inputs[at + 5]);
    if (!layers || !bidirectional) return std::nullopt;
    const double layer_directions = static_cast<double>(*layers) * (*bidirectional ? 2 : 1);
    double per_token = 0, matrices = 0;
    for (const auto& p : params) {
      if (p.shape.size() == 2) matrices += 1;
      per_token += (p.shape.size() == 2 ? 2 : 1) * prod(p.shape);
    }
    // Two matrices per layer and direction, or three in an LSTM with projections (h = W_hr (o * tanh(c)),
    // counted above with the other matrices); anything else is a list we misread.
    const bool projections = gates == 4 && matrices == 3 * layer_directions;
    if (matrices != 2 * layer_directions && !projections) return std::nullopt;
    const double hidden = static_cast<double>(params.front().shape[0]) / gates;
    per_token += layer_directions * hidden * (gates + per_unit);
    return estimated(g, n, tokens * per_token);
  }
  return std::nullopt;
}
Cost lstm(const Graph& g, const Node& n) { return recurrent(g, n, 4, 24); }
Cost gru(const Graph& g, const Node& n) { return recurrent(g, n, 3, 17); }
Cost rnn_tanh(const Graph& g, const Node& n) { return recurrent(g, n, 1, 4); }
Cost rnn_relu(const Graph& g, const Node& n) { return recurrent(g, n, 1, 1); }

// einsum(equation, tensors, path): every index letter is one loop, so one operand costs prod(sizes) and two
// operands 2 * prod(sizes). Ellipses and three or more operands (order-dependent) get no estimate.
Cost einsum(const Graph& g, const Node& n) {
  if (n.inputs.size() < 2) return std::nullopt;
  const auto eq = constant_string(g, n.inputs[0]);
  const auto operands = list_elements(g, n.inputs[1]);
  if (!eq || eq->find('.') != std::string::npos || operands.empty() || operands.size() > 2)
    return std::nullopt;
  const std::string lhs = eq->substr(0, eq->find("->"));
  std::map<char, int64_t> sizes;
  size_t op_index = 0, dim = 0;
  for (char c : lhs) {
    if (c == ' ') continue;
    if (c == ',') {
      if (dim != operands[op_index].shape.size() || ++op_index >= operands.size()) return std::nullopt;
      dim = 0;
      continue;
    }
    if (dim >= operands[op_index].shape.size()) return std::nullopt;
    const int64_t size = operands[op_index].shape[dim++];
    sizes[c] = std::max(sizes[c], size);  // broadcasting: a 1 against n loops n times
  }
  if (op_index + 1 != operands.size() || dim != operands[op_index].shape.size()) return std::nullopt;
  double loops = 1;
  for (const auto& [letter, size] : sizes) loops *= static_cast<double>(size);
  return estimated(g, n, (operands.size() == 2 ? 2 : 1) * loops);
}

// max_pool{1,2,3}d / avg_pool{1,2,3}d(input, kernel_size, ...): out_numel * kernel area; a single int kernel
// applies to every spatial dim.
Cost pool(const Graph& g, const Node& n, int spatial) {
  const TensorMeta* out = output_meta(g, n);
  auto kernel = n.inputs.size() > 1 ? constant_int_list(g, n.inputs[1]) : std::nullopt;
  if (!out || !kernel || kernel->empty()) return std::nullopt;
  if (kernel->size() == 1) kernel->assign(static_cast<size_t>(spatial), kernel->front());
  return estimated(g, n, numel(*out) * prod(*kernel));
}
Cost pool1d(const Graph& g, const Node& n) { return pool(g, n, 1); }
Cost pool2d(const Graph& g, const Node& n) { return pool(g, n, 2); }
Cost pool3d(const Graph& g, const Node& n) { return pool(g, n, 3); }

Cost per_input_element(const Graph& g, const Node& n, double per_element) {
  const TensorMeta* x = input_meta(g, n, 0);
  if (!x || n.outputs.empty() || g.value(n.outputs[0]).tensors.empty()) return std::nullopt;
  return estimated(g, n, per_element * numel(*x));
}
Cost adaptive_pool(const Graph& g, const Node& n) { return per_input_element(g, n, 1); }
Cost softmax(const Graph& g, const Node& n) { return per_input_element(g, n, 5); }
Cost norm(const Graph& g, const Node& n) { return per_input_element(g, n, 8); }

// batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled)
Cost batch_norm(const Graph& g, const Node& n) {
  const auto training = n.inputs.size() > 5 ? constant_bool(g, n.inputs[5]) : std::nullopt;
  return per_input_element(g, n, training == false ? 4 : 8);
}

// embedding(weight, indices, ...): no arithmetic; reads the indices and the gathered rows.
Cost embedding(const Graph& g, const Node& n) {
  const TensorMeta* idx = input_meta(g, n, 1);
  const TensorMeta* out = output_meta(g, n);
  if (!idx || !out) return std::nullopt;
  return OpCost{Flops(0), idx->bytes() + out->bytes(), out->bytes(), CostStatus::kEstimated};
}

}  // namespace

Handler find_compute_handler(std::string_view op) {
  static const std::unordered_map<std::string_view, Handler> table = {
      {"aten::_convolution", generic_convolution},
      {"aten::convolution", generic_convolution},
      {"aten::conv1d", conv},
      {"aten::conv2d", conv},
      {"aten::conv3d", conv},
      {"aten::conv_transpose1d", conv_transpose},
      {"aten::conv_transpose2d", conv_transpose},
      {"aten::conv_transpose3d", conv_transpose},
      {"aten::linear", linear},
      {"aten::addmm", addmm},
      {"aten::baddbmm", addmm},
      {"aten::mm", matmul},
      {"aten::bmm", matmul},
      {"aten::matmul", matmul},
      {"aten::mv", matmul},
      {"aten::dot", matmul},
      {"aten::einsum", einsum},
      {"aten::scaled_dot_product_attention", attention},
      {"aten::_native_multi_head_attention", native_multi_head_attention},
      {"aten::_transformer_encoder_layer_fwd", transformer_encoder_layer},
      {"aten::max_pool1d", pool1d},
      {"aten::avg_pool1d", pool1d},
      {"aten::max_pool2d", pool2d},
      {"aten::max_pool2d_with_indices", pool2d},
      {"aten::avg_pool2d", pool2d},
      {"aten::max_pool3d", pool3d},
      {"aten::avg_pool3d", pool3d},
      {"aten::adaptive_avg_pool1d", adaptive_pool},
      {"aten::adaptive_avg_pool2d", adaptive_pool},
      {"aten::adaptive_avg_pool3d", adaptive_pool},
      {"aten::adaptive_max_pool1d", adaptive_pool},
      {"aten::adaptive_max_pool2d", adaptive_pool},
      {"aten::adaptive_max_pool3d", adaptive_pool},
      {"aten::batch_norm", batch_norm},
      {"aten::layer_norm", norm},
      {"aten::group_norm", norm},
      {"aten::instance_norm", norm},
      {"aten::softmax", softmax},
      {"aten::log_softmax", softmax},
      {"aten::_softmax", softmax},
      {"aten::embedding", embedding},
      {"aten::lstm", lstm},
      {"aten::gru", gru},
      {"aten::rnn_tanh", rnn_tanh},
      {"aten::rnn_relu", rnn_relu},
  };
  const auto it = table.find(op);
  return it == table.end() ? nullptr : it->second;
}

}  // namespace partita::op_cost_detail

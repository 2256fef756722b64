// Ops whose cost needs a shape formula. Argument positions follow the TorchScript schemas of torch 1.13.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <unordered_map>

#include "op_cost_internal.h"
#include "partita/graph/constant_value.h"
#include "partita/graph/op_cost.h"

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
// 2 sigmoids, 1 tanh, r*h_n, h = (1-z)*n + z*h = 17; Elman: the activation (tanh 4, relu 1). Kernel calls:
// recurrent_kernel_calls (op_cost.h) over the layout's time steps.
Cost recurrent(const Graph& g, const Node& n, double per_unit) {
  const std::optional<RecurrentLayout> layout = recurrent_layout(g, n);
  if (!layout) return std::nullopt;
  double per_token = 0;
  for (const auto& p : layout->weights) per_token += (p.shape.size() == 2 ? 2 : 1) * prod(p.shape);
  const double hidden = static_cast<double>(layout->hidden);
  per_token += static_cast<double>(layout->layer_directions()) * hidden *
               (static_cast<double>(layout->gates) + per_unit);
  OpCost cost = estimated(g, n, layout->tokens * per_token);
  cost.kernel_calls = recurrent_kernel_calls(n.op, layout->steps, layout->layer_directions());
  return cost;
}
Cost lstm(const Graph& g, const Node& n) { return recurrent(g, n, 24); }
Cost gru(const Graph& g, const Node& n) { return recurrent(g, n, 17); }
Cost rnn_tanh(const Graph& g, const Node& n) { return recurrent(g, n, 4); }
Cost rnn_relu(const Graph& g, const Node& n) { return recurrent(g, n, 1); }

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

// embedding_bag(weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights, ...): every
// index gathers a row of D and adds it to (or compares it with) its bag's output, 1 per gathered element (2
// with per_sample_weights); reads the indices, the offsets and the gathered rows.
Cost embedding_bag(const Graph& g, const Node& n) {
  const TensorMeta* w = input_meta(g, n, 0);
  const TensorMeta* idx = input_meta(g, n, 1);
  const TensorMeta* out = output_meta(g, n);
  if (!w || !idx || !out || w->shape.size() != 2 || out->numel() == 0) return std::nullopt;
  const double gathered = numel(*idx) * static_cast<double>(w->shape[1]);
  const bool weighted = n.inputs.size() > 6 && !is_none(g, n.inputs[6]);
  const TensorMeta* offsets = input_meta(g, n, 2);
  const double element_bytes = static_cast<double>(out->bytes().value()) / numel(*out);
  const Bytes read = idx->bytes() + (offsets ? offsets->bytes() : Bytes(0)) +
                     Bytes(static_cast<int64_t>(gathered * element_bytes));
  return OpCost{Flops((weighted ? 2 : 1) * gathered), read, out->bytes(), CostStatus::kEstimated};
}

// grid_sampler(input, grid, interpolation_mode, padding_mode, align_corners): each output element is
// interpolated from 2^d input neighbours (2^d multiplies, 2^d - 1 adds) in bilinear mode (0), 4^d in bicubic
// (2), and copied in nearest (1); d is the number of spatial dims (2 or 3).
Cost grid_sampler(const Graph& g, const Node& n) {
  const TensorMeta* out = output_meta(g, n);
  const auto mode = n.inputs.size() > 2 ? constant_int(g, n.inputs[2]) : std::nullopt;
  if (!out || !mode || out->shape.size() < 3 || *mode < 0 || *mode > 2) return std::nullopt;
  const double d = static_cast<double>(out->shape.size() - 2);
  const double neighbours = *mode == 1 ? 0 : std::pow(*mode == 0 ? 2.0 : 4.0, d);
  return estimated(g, n, numel(*out) * std::max(0.0, 2 * neighbours - 1));
}

// cdist(x1 [..., P, M], x2 [..., R, M], p): per output distance M differences, M powers (or squares) and M
// adds, then the root.
Cost cdist(const Graph& g, const Node& n) {
  const TensorMeta* x1 = input_meta(g, n, 0);
  const TensorMeta* out = output_meta(g, n);
  if (!x1 || !out || x1->shape.empty()) return std::nullopt;
  return estimated(g, n, numel(*out) * (3 * static_cast<double>(x1->shape.back()) + 1));
}

// cosine_similarity(x1, x2, dim, eps): three dot products over dim (x1.x2, x1.x1, x2.x2), 2 per element of
// the larger operand each; the division per output is not counted.
Cost cosine_similarity(const Graph& g, const Node& n) {
  const TensorMeta* x1 = input_meta(g, n, 0);
  const TensorMeta* x2 = input_meta(g, n, 1);
  if (!x1 || !x2 || !output_meta(g, n)) return std::nullopt;
  return estimated(g, n, 6 * std::max(numel(*x1), numel(*x2)));
}

// bilinear(x1 [..., I1], x2 [..., I2], weight [O, I1, I2], bias): y_k = (x1 W_k) . x2 + b_k, I1 * I2 + I2
// multiply-adds per output element, 1 for the bias.
Cost bilinear(const Graph& g, const Node& n) {
  const TensorMeta* w = input_meta(g, n, 2);
  const TensorMeta* out = output_meta(g, n);
  if (!w || !out || w->shape.size() != 3) return std::nullopt;
  const double i1 = static_cast<double>(w->shape[1]), i2 = static_cast<double>(w->shape[2]);
  return estimated(g, n, numel(*out) * (2 * (i1 * i2 + i2) + (has_bias(g, n, 3) ? 1 : 0)));
}

// _weight_norm(v, g, dim): w = g * v / ||v||, the norm 2 per element of v, the division and the scale 1 each.
Cost weight_norm(const Graph& g, const Node& n) { return per_input_element(g, n, 4); }

// col2im sums the overlapping patches: one add per input element.
Cost col2im(const Graph& g, const Node& n) { return per_input_element(g, n, 1); }

// Dense linear algebra on A [..., n, n], counted as LU factorization does it: 2/3 n^3 per matrix for the
// determinant; the solve adds 2 n^2 per right-hand column (forward and back substitution); the inverse 2 n^3.
double square_matrices(const TensorMeta& a) {
  return numel(a) / std::pow(static_cast<double>(a.shape.back()), 2);
}
Cost determinant(const Graph& g, const Node& n) {
  const TensorMeta* a = input_meta(g, n, 0);
  if (!a || a->shape.size() < 2 || a->shape.back() <= 0) return std::nullopt;
  const double m = static_cast<double>(a->shape.back());
  return estimated(g, n, square_matrices(*a) * 2.0 / 3.0 * m * m * m);
}
Cost solve(const Graph& g, const Node& n) {
  const TensorMeta* a = input_meta(g, n, 0);
  const TensorMeta* b = input_meta(g, n, 1);
  if (!a || !b || a->shape.size() < 2 || a->shape.back() <= 0) return std::nullopt;
  const double m = static_cast<double>(a->shape.back());
  return estimated(g, n, square_matrices(*a) * 2.0 / 3.0 * m * m * m + 2 * m * numel(*b));
}
Cost inverse(const Graph& g, const Node& n) {
  const TensorMeta* a = input_meta(g, n, 0);
  if (!a || a->shape.size() < 2 || a->shape.back() <= 0) return std::nullopt;
  const double m = static_cast<double>(a->shape.back());
  return estimated(g, n, square_matrices(*a) * 2 * m * m * m);
}

// The size of `t` along the dim given by the node's constant input `at` (negative counts from the end).
std::optional<double> size_along(const Graph& g, const Node& n, const TensorMeta& t, size_t at) {
  const auto dim = at < n.inputs.size() ? constant_int(g, n.inputs[at]) : std::nullopt;
  const auto rank = static_cast<int64_t>(t.shape.size());
  if (!dim || *dim < -rank || *dim >= rank) return std::nullopt;
  return static_cast<double>(t.shape[static_cast<size_t>(*dim < 0 ? *dim + rank : *dim)]);
}

// One-dimensional FFTs, fft_*(self, n, dim, norm): 5 N log2 N per complex transform of length N, half that
// for a real one (rfft: N is the input's length, irfft: the output's); numel / N transforms.
Cost fft(const Graph& g, const Node& n, bool real, bool length_of_output) {
  const TensorMeta* t = length_of_output ? output_meta(g, n) : input_meta(g, n, 0);
  if (!t) return std::nullopt;
  const auto length = size_along(g, n, *t, 2);
  if (!length || *length < 2) return std::nullopt;
  return estimated(g, n, numel(*t) * (real ? 2.5 : 5) * std::log2(*length));
}
Cost fft_complex(const Graph& g, const Node& n) { return fft(g, n, false, false); }
Cost fft_real(const Graph& g, const Node& n) { return fft(g, n, true, false); }
Cost fft_real_inverse(const Graph& g, const Node& n) { return fft(g, n, true, true); }

// Comparison sorts, N log2 N comparisons per sorted row of N: sort(self, dim, descending) and
// argsort(self, dim, descending), or their stable overloads (self, stable, dim, descending) with the dim one
// later; topk(self, k, dim, largest, sorted) keeps a heap of k, log2 k per element.
Cost sort(const Graph& g, const Node& n) {
  const TensorMeta* x = input_meta(g, n, 0);
  if (!x) return std::nullopt;
  const auto length = size_along(g, n, *x, n.inputs.size() == 4 ? 2 : 1);
  if (!length) return std::nullopt;
  return estimated(g, n, numel(*x) * std::max(1.0, std::log2(*length)));
}
Cost topk(const Graph& g, const Node& n) {
  const TensorMeta* x = input_meta(g, n, 0);
  const auto k = n.inputs.size() > 1 ? constant_int(g, n.inputs[1]) : std::nullopt;
  if (!x || !k || *k < 1) return std::nullopt;
  return estimated(g, n, numel(*x) * std::max(1.0, std::log2(static_cast<double>(*k))));
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
      {"aten::embedding_bag", embedding_bag},
      {"aten::_embedding_bag", embedding_bag},
      {"aten::grid_sampler", grid_sampler},
      {"aten::grid_sampler_2d", grid_sampler},
      {"aten::grid_sampler_3d", grid_sampler},
      {"aten::cdist", cdist},
      {"aten::cosine_similarity", cosine_similarity},
      {"aten::bilinear", bilinear},
      {"aten::_weight_norm", weight_norm},
      {"aten::col2im", col2im},
      {"aten::linalg_det", determinant},
      {"aten::det", determinant},
      {"aten::logdet", determinant},
      {"aten::slogdet", determinant},
      {"aten::linalg_slogdet", determinant},
      {"aten::linalg_solve", solve},
      {"aten::linalg_inv", inverse},
      {"aten::inverse", inverse},
      {"aten::fft_fft", fft_complex},
      {"aten::fft_ifft", fft_complex},
      {"aten::fft_rfft", fft_real},
      {"aten::fft_ihfft", fft_real},
      {"aten::fft_irfft", fft_real_inverse},
      {"aten::fft_hfft", fft_real_inverse},
      {"aten::sort", sort},
      {"aten::argsort", sort},
      {"aten::topk", topk},
  };
  const auto it = table.find(op);
  return it == table.end() ? nullptr : it->second;
}

}  // namespace partita::op_cost_detail

namespace partita {

std::optional<RecurrentLayout> recurrent_layout(const Graph& g, const Node& n) {
  RecurrentLayout out;
  if (n.op == "aten::lstm") {
    out.gates = 4;
  } else if (n.op == "aten::gru") {
    out.gates = 3;
  } else if (n.op != "aten::rnn_tanh" && n.op != "aten::rnn_relu") {
    return std::nullopt;
  }
  const TensorMeta* x = n.inputs.empty() ? nullptr : g.value(n.inputs[0]).meta();
  if (!x || x->shape.empty() || x->shape.back() <= 0) return std::nullopt;
  out.tokens = static_cast<double>(x->numel()) / static_cast<double>(x->shape.back());
  // The params list sits at 2 (.input) or 3 (.data: packed, data [tokens, features]).
  for (size_t at : {size_t{2}, size_t{3}}) {
    if (n.inputs.size() < at + 6) continue;
    out.weights = op_cost_detail::list_elements(g, n.inputs[at]);
    if (out.weights.empty() || out.weights.front().shape.size() != 2) continue;  // hx, not the weights
    const auto layers = constant_int(g, n.inputs[at + 2]);
    const auto bidirectional = constant_bool(g, n.inputs[at + 5]);
    if (!layers || *layers < 1 || !bidirectional) return std::nullopt;
    out.layers = *layers;
    out.directions = *bidirectional ? 2 : 1;
    int64_t matrices = 0;
    for (const auto& p : out.weights) matrices += p.shape.size() == 2 ? 1 : 0;
    // Two matrices per layer and direction, or three in an LSTM with projections (h = W_hr (o * tanh(c)));
    // anything else is a list we misread.
    out.projections = out.gates == 4 && matrices == 3 * out.layer_directions();
    if (matrices != 2 * out.layer_directions() && !out.projections) return std::nullopt;
    out.hidden = out.weights.front().shape[0] / out.gates;
    out.steps = x->shape.front();
    if (at == 3) {  // packed: batch_sizes holds one entry per time step
      const TensorMeta* batch_sizes = g.value(n.inputs[1]).meta();
      if (!batch_sizes || batch_sizes->shape.size() != 1) return std::nullopt;
      out.steps = batch_sizes->shape[0];
    } else if (x->shape.size() == 3 && n.inputs.size() > at + 6 &&
               constant_bool(g, n.inputs[at + 6]).value_or(false)) {
      out.steps = x->shape[1];
    }
    return out;
  }
  return std::nullopt;
}

}  // namespace partita

#include "partita/graph/op_cost.h"

#include <algorithm>
#include <set>
#include <string_view>
#include <unordered_map>

#include "op_cost_internal.h"
#include "partita/core/error.h"
#include "partita/graph/constant_value.h"
#include "partita/graph/op_names.h"

namespace partita {

namespace op_cost_detail {

const TensorMeta* input_meta(const Graph& g, const Node& n, size_t i) {
  return i < n.inputs.size() ? g.value(n.inputs[i]).meta() : nullptr;
}
const TensorMeta* output_meta(const Graph& g, const Node& n, size_t i) {
  return i < n.outputs.size() ? g.value(n.outputs[i]).meta() : nullptr;
}
double numel(const TensorMeta& t) { return static_cast<double>(t.numel()); }

namespace {
Bytes tensor_bytes(const Graph& g, const std::vector<ValueId>& ids) {
  Bytes total(0);
  for (ValueId id : ids) {
    for (const auto& t : g.value(id).tensors) total += t.bytes();
  }
  return total;
}
}  // namespace

OpCost estimated(const Graph& g, const Node& n, double flops) {
  return OpCost{Flops(flops), tensor_bytes(g, n.inputs), tensor_bytes(g, n.outputs), CostStatus::kEstimated};
}

}  // namespace op_cost_detail

namespace {

using namespace op_cost_detail;

enum class Rule {
  kStructural,   // no work: aliasing, packing, shape queries
  kCopy,         // 0 flops, reads inputs, writes outputs
  kFill,         // 0 flops, writes outputs only (factory ops)
  kElementwise,  // per_element flops per output element
  kReduction,    // 1 flop per input element (or elementwise when given two tensors, e.g. max(a, b))
  kDropout,      // identity when train=False, else 2 per element (mask and scale)
  kConvert,      // aten::to / type_as: structural when the dtype does not change, else a copy
};

struct OpRule {
  Rule rule;
  double per_element = 1;
};

const std::unordered_map<std::string_view, OpRule>& rules() {
  static const auto* table = [] {
    auto* t = new std::unordered_map<std::string_view, OpRule>();
    for (std::string_view op : {"prim::ListConstruct",
                                "prim::ListUnpack",
                                "prim::TupleConstruct",
                                "prim::TupleUnpack",
                                "prim::TupleIndex",
                                "prim::NumToTensor",
                                "prim::Constant",
                                "prim::GetAttr",
                                "prim::device",
                                "prim::dtype",
                                "prim::shape",
                                "aten::size",
                                "aten::Int",
                                "aten::Float",
                                "aten::Bool",
                                "aten::ScalarImplicit",
                                "aten::IntImplicit",
                                "aten::FloatImplicit",
                                "aten::numel",
                                "aten::dim",
                                "aten::len",
                                "aten::__getitem__",
                                "aten::view",
                                "aten::view_as",
                                "aten::reshape",
                                "aten::reshape_as",
                                "aten::flatten",
                                "aten::unflatten",
                                "aten::transpose",
                                "aten::t",
                                "aten::permute",
                                "aten::unsqueeze",
                                "aten::squeeze",
                                "aten::expand",
                                "aten::expand_as",
                                "aten::slice",
                                "aten::select",
                                "aten::narrow",
                                "aten::chunk",
                                "aten::unsafe_chunk",
                                "aten::split",
                                "aten::split_with_sizes",
                                "aten::unsafe_split",
                                "aten::unbind",
                                "aten::detach",
                                "aten::alias",
                                "aten::movedim",
                                "aten::swapaxes",
                                "aten::as_strided",
                                "aten::lift_fresh",
                                "aten::broadcast_tensors",
                                "aten::tensor_split",
                                "aten::hsplit",
                                "aten::vsplit",
                                "aten::dsplit",
                                "aten::meshgrid",
                                "aten::diagonal",
                                "aten::unfold",
                                "aten::view_as_real",
                                "aten::view_as_complex",
                                "aten::warn"}) {
      (*t)[op] = {Rule::kStructural};
    }
    for (std::string_view op :
         {"aten::cat", "aten::concat", "aten::stack", "aten::contiguous", "aten::clone", "aten::copy",
          "aten::repeat", "aten::tile", "aten::constant_pad_nd", "aten::pad", "aten::index",
          "aten::index_select", "aten::gather", "aten::flip", "aten::roll", "aten::masked_select",
          "aten::repeat_interleave", "aten::tril", "aten::triu", "aten::hstack", "aten::vstack",
          "aten::dstack", "aten::column_stack", "aten::take", "aten::take_along_dim", "aten::diag",
          "aten::diag_embed",
          // Rearrangements: each output element is one input element.
          "aten::pixel_shuffle", "aten::pixel_unshuffle", "aten::channel_shuffle",
          "aten::native_channel_shuffle", "aten::im2col", "aten::upsample_nearest1d",
          "aten::upsample_nearest2d", "aten::upsample_nearest3d", "aten::reflection_pad1d",
          "aten::reflection_pad2d", "aten::reflection_pad3d", "aten::replication_pad1d",
          "aten::replication_pad2d", "aten::replication_pad3d",
          // Writes of some elements into a copy of the input; an add per written element at most
          // (scatter_add, index_add), which the bytes moved outweigh.
          "aten::one_hot", "aten::max_unpool2d", "aten::max_unpool3d", "aten::scatter", "aten::scatter_add",
          "aten::scatter_reduce", "aten::index_add", "aten::index_copy", "aten::index_fill",
          "aten::index_put", "aten::masked_scatter"}) {
      (*t)[op] = {Rule::kCopy};
    }
    for (std::string_view op :
         {"aten::zeros",         "aten::ones",       "aten::full",         "aten::empty",
          "aten::arange",        "aten::zeros_like", "aten::ones_like",    "aten::full_like",
          "aten::empty_like",    "aten::new_zeros",  "aten::new_ones",     "aten::new_full",
          "aten::new_empty",     "aten::fill",       "aten::zero",         "aten::rand",
          "aten::randn",         "aten::rand_like",  "aten::randn_like",   "aten::linspace",
          "aten::scalar_tensor", "aten::tensor",     "aten::randint",      "aten::randint_like",
          "aten::randperm",      "aten::eye",        "aten::empty_strided"}) {
      (*t)[op] = {Rule::kFill};
    }
    for (std::string_view op :
         {"aten::relu",        "aten::relu6",       "aten::leaky_relu",   "aten::hardtanh",
          "aten::threshold",   "aten::add",         "aten::sub",          "aten::rsub",
          "aten::mul",         "aten::div",         "aten::floor_divide", "aten::remainder",
          "aten::fmod",        "aten::neg",         "aten::abs",          "aten::pow",
          "aten::sqrt",        "aten::rsqrt",       "aten::exp",          "aten::log",
          "aten::log2",        "aten::log1p",       "aten::reciprocal",   "aten::square",
          "aten::sin",         "aten::cos",         "aten::erf",          "aten::masked_fill",
          "aten::where",       "aten::clamp",       "aten::clamp_min",    "aten::clamp_max",
          "aten::clip",        "aten::maximum",     "aten::minimum",      "aten::eq",
          "aten::ne",          "aten::lt",          "aten::gt",           "aten::le",
          "aten::ge",          "aten::floor",       "aten::ceil",         "aten::round",
          "aten::sign",        "aten::logical_not", "aten::logical_and",  "aten::logical_or",
          "aten::bitwise_not", "aten::bitwise_and", "aten::bitwise_or",   "aten::__and__",
          "aten::__or__",      "aten::floordiv",    "aten::prelu",        "aten::tan",
          "aten::atan",        "aten::asin",        "aten::acos",         "aten::atan2",
          "aten::sinh",        "aten::cosh",        "aten::asinh",        "aten::erfc",
          "aten::expm1",       "aten::exp2",        "aten::log10",        "aten::trunc",
          "aten::frac",        "aten::sgn",         "aten::isnan",        "aten::isinf",
          "aten::nan_to_num",  "aten::logical_xor", "aten::bitwise_xor",  "aten::__xor__",
          "aten::hypot",       "aten::xlogy",       "aten::hardshrink",   "aten::softshrink"}) {
      (*t)[op] = {Rule::kElementwise, 1};
    }
    const std::pair<std::string_view, double> heavy[] = {
        {"aten::gelu", 8},
        {"aten::silu", 8},
        {"aten::mish", 10},
        {"aten::sigmoid", 4},
        {"aten::tanh", 4},
        {"aten::softplus", 4},
        {"aten::elu", 3},
        {"aten::selu", 3},
        {"aten::celu", 3},
        {"aten::hardswish", 3},
        {"aten::hardsigmoid", 2},
        {"aten::addcmul", 2},
        {"aten::addcdiv", 2},
        {"aten::lerp", 3},
        // log(sigmoid(x)) = -softplus(-x); x - tanh(x); x / (1 + |x|); a * sigmoid(b) per output element.
        {"aten::log_sigmoid", 5},
        {"aten::tanhshrink", 5},
        {"aten::softsign", 3},
        {"aten::glu", 5},
        // Interpolation: each output element is a weighted sum of its 2^d neighbours (2^d multiplies, 2^d - 1
        // adds; bicubic 16 neighbours); the weights are per output position and not counted.
        {"aten::upsample_linear1d", 3},
        {"aten::upsample_bilinear2d", 7},
        {"aten::upsample_trilinear3d", 15},
        {"aten::upsample_bicubic2d", 31},
        // theta [N, 2, 3] (or [N, 3, 4]) times each homogeneous base-grid point: 3 (4) multiply-adds per
        // output coordinate; 2-D counted.
        {"aten::affine_grid_generator", 6}};
    for (const auto& [op, f] : heavy) (*t)[op] = {Rule::kElementwise, f};
    for (std::string_view op :
         {"aten::sum", "aten::mean", "aten::amax", "aten::amin", "aten::max", "aten::min", "aten::prod",
          "aten::std", "aten::var", "aten::std_mean", "aten::var_mean", "aten::norm", "aten::logsumexp",
          "aten::all", "aten::any", "aten::argmax", "aten::argmin", "aten::count_nonzero", "aten::cumsum",
          "aten::cumprod",
          // torch.norm(x, dim=d) traces to frobenius_norm, torch.linalg's norms to their own ops.
          "aten::frobenius_norm", "aten::linalg_vector_norm", "aten::linalg_norm",
          "aten::linalg_matrix_norm"}) {
      (*t)[op] = {Rule::kReduction};
    }
    for (std::string_view op : {"aten::dropout", "aten::feature_dropout", "aten::alpha_dropout"}) {
      (*t)[op] = {Rule::kDropout};
    }
    for (std::string_view op : {"aten::to", "aten::type_as"}) (*t)[op] = {Rule::kConvert};
    return t;
  }();
  return *table;
}

OpCost structural() { return OpCost{Flops(0), Bytes(0), Bytes(0), CostStatus::kStructural}; }
OpCost no_estimate() { return OpCost{}; }

bool has_tensor(const Graph& g, const std::vector<ValueId>& ids) {
  return std::any_of(ids.begin(), ids.end(), [&](ValueId id) {
    const Value& v = g.value(id);
    return v.kind == ValueKind::kTensor || !v.tensors.empty();
  });
}

std::optional<OpCost> simple_cost(const Graph& g, const Node& n, OpRule r) {
  // Integer arithmetic on sizes (aten::mul(int, int) in dynamic-shape traces) is bookkeeping, not work.
  if (!has_tensor(g, n.inputs) && !has_tensor(g, n.outputs)) return structural();
  const TensorMeta* in = input_meta(g, n, 0);
  const TensorMeta* out = output_meta(g, n, 0);
  switch (r.rule) {
    case Rule::kStructural:
      return structural();
    case Rule::kCopy:
    case Rule::kFill: {
      if (n.outputs.empty() || g.value(n.outputs[0]).tensors.empty()) return std::nullopt;
      OpCost c = estimated(g, n, 0);
      if (r.rule == Rule::kFill) c.bytes_read = Bytes(0);
      return c;
    }
    case Rule::kElementwise:
      if (!out) return std::nullopt;
      return estimated(g, n, r.per_element * numel(*out));
    case Rule::kReduction: {
      if (!in || !out) return std::nullopt;
      // max(a, b) / min(a, b) with two tensors are elementwise.
      const TensorMeta* other = input_meta(g, n, 1);
      return estimated(g, n, other ? numel(*out) : numel(*in));
    }
    case Rule::kDropout: {
      const auto train = n.inputs.size() > 2 ? constant_bool(g, n.inputs[2]) : std::nullopt;
      if (train == false) return structural();
      if (!out) return std::nullopt;
      return estimated(g, n, 2 * numel(*out));
    }
    case Rule::kConvert:
      if (!in || !out) return std::nullopt;
      if (in->dtype == out->dtype) return structural();
      return estimated(g, n, 0);
  }
  return std::nullopt;
}

}  // namespace

OpCost estimate_cost(const Graph& graph, NodeId node) {
  const Node& n = graph.node(node);
  // In-place variants ("aten::relu_") cost what the functional op costs.
  const std::string_view op = functional_op(n.op);
  std::optional<OpCost> cost;
  if (const auto it = rules().find(op); it != rules().end()) {
    cost = simple_cost(graph, n, it->second);
  } else if (const Handler h = find_compute_handler(op)) {
    cost = h(graph, n);
  }
  return cost.value_or(no_estimate());
}

void estimate_costs(Graph& graph) {
  for (auto& n : graph.mutable_nodes()) n.cost = estimate_cost(graph, n.id);
}

std::vector<std::string> ops_without_estimate(const Graph& graph) {
  std::set<std::string> ops;
  for (const auto& n : graph.nodes()) {
    if (n.cost.status == CostStatus::kNoEstimate) ops.insert(n.op);
  }
  return {ops.begin(), ops.end()};
}

int64_t recurrent_kernel_calls(std::string_view op, int64_t steps, int64_t layer_directions) {
  int64_t per_step = 0;
  if (op == "aten::lstm") {
    per_step = 11;
  } else if (op == "aten::gru") {
    per_step = 12;
  } else if (op == "aten::rnn_tanh" || op == "aten::rnn_relu") {
    per_step = 3;
  }
  PARTITA_CHECK(per_step > 0, "recurrent_kernel_calls: '", op, "' is not a recurrent layer");
  PARTITA_CHECK(steps >= 0 && layer_directions >= 1, "recurrent_kernel_calls: ", steps, " steps and ",
                layer_directions, " layers x directions");
  return layer_directions * (steps * per_step + 2);
}

}  // namespace partita

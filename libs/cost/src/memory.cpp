#include "partita/cost/memory.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "partita/core/error.h"
#include "partita/cost/compute.h"
#include "partita/graph/analysis.h"
#include "partita/graph/constant_value.h"
#include "partita/graph/op_cost.h"
#include "partita/graph/op_names.h"

namespace partita {

namespace {

void check_range(const Graph& graph, NodeId first, NodeId last) {
  PARTITA_CHECK(first >= 0 && first <= last && last < graph.num_nodes(), "node range [", first, ", ", last,
                "] is not inside the graph's ", graph.num_nodes(), " nodes (ids 0..", graph.num_nodes() - 1,
                ")");
}

Bytes floating_bytes(const Value& v) {
  Bytes b(0);
  for (const auto& t : v.tensors) {
    if (is_floating(t.dtype)) b += t.bytes();
  }
  return b;
}

bool is_weight_or_constant(const Value& v) {
  return v.role == ValueRole::kParameter || v.role == ValueRole::kBuffer || v.role == ValueRole::kConstant;
}

// Floating tensors that enter [first, last] from outside it (user inputs or earlier nodes), each once.
Bytes range_input_bytes(const Graph& graph, NodeId first, NodeId last, std::vector<bool>& seen) {
  Bytes b(0);
  for (NodeId n = first; n <= last; ++n) {
    for (ValueId id : graph.node(n).inputs) {
      const Value& v = graph.value(id);
      if (seen[static_cast<size_t>(id)] || is_weight_or_constant(v)) continue;
      if (v.producer != kNoNode && v.producer >= first) continue;  // produced inside the range
      seen[static_cast<size_t>(id)] = true;
      b += floating_bytes(v);
    }
  }
  return b;
}

bool op_is(const Node& node, std::initializer_list<std::string_view> names) {
  const std::string_view bare =
      std::string_view(node.op).substr(node.op.find("::") == std::string::npos ? 0 : node.op.find("::") + 2);
  return std::find(names.begin(), names.end(), bare) != names.end();
}

// What autograd keeps of one forward, value by value: storage roots (views and in-place results share their
// input's storage), which values need a gradient, and which tensors each node saves for its backward.
struct AutogradModel {
  std::vector<ValueId> root;        // [value] the value whose storage it shares (itself when it owns one)
  std::vector<bool> requires_grad;  // [value]
  std::vector<std::vector<ValueId>> saved;  // [node] roots saved for backward
  std::vector<Bytes> saved_extra;           // [node] saved tensors that are not graph values (pool indices)
};

bool float_tensor(const Value& v) {
  return !v.tensors.empty() && std::any_of(v.tensors.begin(), v.tensors.end(),
                                           [](const TensorMeta& t) { return is_floating(t.dtype); });
}

// The tensors autograd saves for `node`, after PyTorch 1.13's derivatives.yaml, coarsely: products (linear,
// matmul, conv) save each operand whose partner needs a gradient; norms save their input; relu-like ops and
// softmax save their output (also in place: relu_, sigmoid_, tanh_, exp_, elu_... have formulas of their
// result); gelu-like ops, hardtanh, clamp, pooling and unknown ops save their input; add, sub, views, copies,
// concatenation, embedding (its indices are user inputs) and reductions to a scalar save nothing that
// counts. Mul/div save the other operand when it is a tensor. (An in-place op saving its overwritten input
// saves a copy, and dropout its mask: autograd_model adds those.)
std::vector<ValueId> saved_inputs(const Graph& g, const Node& node, const std::vector<bool>& rg) {
  std::vector<ValueId> tensors;  // float tensor inputs, in order
  for (ValueId id : node.inputs) {
    if (float_tensor(g.value(id))) tensors.push_back(id);
  }
  std::vector<ValueId> out;
  const auto needs = [&](ValueId id) { return rg[static_cast<size_t>(id)]; };
  switch (classify_op(node)) {
    case OpClass::kMatmul:
    case OpClass::kConv: {
      // linear/conv(x, w, b), matmul(a, b), addmm(bias, a, b): the two operands.
      const size_t skip = op_is(node, {"addmm", "baddbmm", "addbmm", "addmv"}) ? 1 : 0;
      if (tensors.size() >= skip + 2) {
        const ValueId a = tensors[skip], b = tensors[skip + 1];
        if (needs(b)) out.push_back(a);
        if (needs(a)) out.push_back(b);
      } else {
        out = tensors;
      }
      return out;
    }
    case OpClass::kNorm:
      if (!tensors.empty()) out.push_back(tensors[0]);
      return out;
    case OpClass::kStructural:
    case OpClass::kMemory:
      return out;
    case OpClass::kElementwise:
    case OpClass::kReduction:
    case OpClass::kRecurrent:
    case OpClass::kOther:
      break;
  }
  if (op_is(node, {"add", "add_", "sub", "sub_", "rsub", "neg", "dropout", "dropout_", "sum", "mean", "cat",
                   "stack", "masked_fill", "masked_fill_"})) {
    return out;
  }
  if (op_is(node, {"mul", "mul_", "div", "div_"})) {
    if (tensors.size() >= 2) {
      if (needs(tensors[1])) out.push_back(tensors[0]);
      if (needs(tensors[0]) || op_is(node, {"div", "div_"})) out.push_back(tensors[1]);
    }
    return out;
  }
  if (op_is(node, {"relu", "relu_", "sigmoid",     "sigmoid_", "tanh",        "tanh_",    "exp",
                   "exp_", "sqrt",  "rsqrt",       "softmax",  "log_softmax", "_softmax", "_log_softmax",
                   "elu",  "elu_",  "leaky_relu_", "celu_",    "selu_",       "sqrt_"})) {
    for (ValueId id : node.outputs) {
      if (float_tensor(g.value(id))) out.push_back(id);
    }
    return out;
  }
  return tensors;  // gelu, silu, hardtanh, pooling, pow, ... and anything unknown: its inputs
}

int rank_of(const Value& v) { return v.meta() ? static_cast<int>(v.meta()->shape.size()) : -1; }

// How a transpose or permute moves dimensions, for the copies aten::matmul makes (see autograd_model):
// `batch` when it moves one of the dimensions before its tensor's last two, `any` when it moves any.
struct DimensionMoves {
  bool batch = false, any = false;
};

DimensionMoves moves_of(const Graph& g, const Node& node) {
  DimensionMoves moves;
  if (node.outputs.empty()) return moves;
  const int r = rank_of(g.value(node.outputs[0]));
  if (r < 2) return moves;
  const auto wrap = [&](int64_t d) { return d < 0 ? d + r : d; };
  if (op_is(node, {"transpose", "transpose_"}) && node.inputs.size() >= 3) {
    const std::optional<int64_t> a = constant_int(g, node.inputs[1]), b = constant_int(g, node.inputs[2]);
    if (!a || !b || wrap(*a) == wrap(*b)) return moves;
    moves.any = true;
    moves.batch = std::min(wrap(*a), wrap(*b)) < r - 2;
  } else if (op_is(node, {"permute"}) && node.inputs.size() >= 2) {
    const std::optional<std::vector<int64_t>> dims = constant_int_list(g, node.inputs[1]);
    if (!dims) return moves;
    for (int i = 0; i < static_cast<int>(dims->size()); ++i) {
      if (wrap((*dims)[static_cast<size_t>(i)]) == i) continue;
      moves.any = true;
      moves.batch = moves.batch || i < r - 2;
    }
  } else if (op_is(node, {"t", "mT"})) {
    moves.any = true;
  }
  return moves;
}

AutogradModel autograd_model(const Graph& g) {
  AutogradModel m;
  const size_t nv = static_cast<size_t>(g.num_values());
  m.root.resize(nv);
  m.requires_grad.assign(nv, false);
  for (size_t v = 0; v < nv; ++v) {
    m.root[v] = static_cast<ValueId>(v);
    m.requires_grad[v] = g.value(static_cast<ValueId>(v)).role == ValueRole::kParameter;
  }
  m.saved.resize(static_cast<size_t>(g.num_nodes()));
  m.saved_extra.assign(static_cast<size_t>(g.num_nodes()), Bytes(0));
  std::vector<DimensionMoves> moved(nv);  // [value] what the transposes along its alias chain moved
  for (const Node& node : g.nodes()) {
    bool any_rg = false;
    for (ValueId id : node.inputs) any_rg = any_rg || m.requires_grad[static_cast<size_t>(id)];
    const bool aliases = classify_op(node) == OpClass::kStructural || is_in_place_op(node.op);
    ValueId base = -1;
    for (ValueId id : node.inputs) {
      if (!g.value(id).tensors.empty()) {
        base = id;
        break;
      }
    }
    const DimensionMoves here = aliases ? moves_of(g, node) : DimensionMoves{};
    for (ValueId id : node.outputs) {
      if (aliases && base >= 0) {
        m.root[static_cast<size_t>(id)] = m.root[static_cast<size_t>(base)];
        const DimensionMoves& before = moved[static_cast<size_t>(base)];
        moved[static_cast<size_t>(id)] = {before.batch || here.batch, before.any || here.any};
      }
      m.requires_grad[static_cast<size_t>(id)] = any_rg && float_tensor(g.value(id));
    }
    if (!any_rg) continue;
    for (ValueId id : saved_inputs(g, node, m.requires_grad)) {
      const Value& v = g.value(id);
      if (is_weight_or_constant(v)) continue;  // parameters are counted as parameters
      // An in-place op whose backward needs the input it overwrites (hardtanh_, silu_, clamp_, mul_ by a
      // tensor that needs a gradient, ...) saves a copy of that input first: a storage of its own.
      if (is_in_place_op(node.op) && id == base) {
        m.saved_extra[static_cast<size_t>(node.id)] += floating_bytes(v);
        continue;
      }
      // aten::matmul folds the batch dimensions of an operand of 3 or more dimensions into one (and its rows
      // too when the other operand has at most 2) with a reshape, which copies when a transpose or permute
      // along the operand's alias chain moved a folded dimension (attention's heads: view, transpose(1, 2));
      // autograd then saves the copy, not the operand's storage. Strides are not in the IR: the chain
      // decides.
      if (op_is(node, {"matmul"}) && node.inputs.size() == 2 && rank_of(v) >= 3) {
        const ValueId other = node.inputs[0] == id ? node.inputs[1] : node.inputs[0];
        const DimensionMoves& mv = moved[static_cast<size_t>(id)];
        if (rank_of(g.value(other)) <= 2 ? mv.any : mv.batch) {
          m.saved_extra[static_cast<size_t>(node.id)] += floating_bytes(v);
          continue;
        }
      }
      m.saved[static_cast<size_t>(node.id)].push_back(m.root[static_cast<size_t>(id)]);
    }
    // Dropout while training multiplies by a random mask of the input's size and dtype and keeps the mask
    // (on the CPU; CUDA's fused kernel keeps a one-byte mask: counted at full size, an upper bound).
    if (op_is(node, {"dropout", "dropout_", "feature_dropout", "feature_dropout_", "alpha_dropout",
                     "alpha_dropout_", "feature_alpha_dropout", "feature_alpha_dropout_"}) &&
        node.inputs.size() >= 3 && base >= 0) {
      const std::optional<double> p = constant_double(g, node.inputs[1]);
      const std::optional<bool> train = constant_bool(g, node.inputs[2]);
      if (train.value_or(true) && p.value_or(1.0) > 0)
        m.saved_extra[static_cast<size_t>(node.id)] += floating_bytes(g.value(base));
    }
    // A recurrent layer runs its cells step by step as ordinary autograd ops (LibTorch 1.13 on the CPU),
    // which keep what recurrent_saved_elements counts; the layer's own input is saved above, as an unknown
    // op's.
    if (classify_op(node) == OpClass::kRecurrent && !node.inputs.empty()) {
      const TensorMeta* x = g.value(node.inputs[0]).meta();
      if (const auto layout = recurrent_layout(g, node); layout && x) {
        m.saved_extra[static_cast<size_t>(node.id)] +=
            Bytes(static_cast<int64_t>(recurrent_saved_elements(*layout)) * dtype_size(x->dtype));
      }
    }
    // max_pool2d keeps its int64 argmax indices, one per output element.
    if (op_is(node, {"max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices"}) &&
        !node.outputs.empty()) {
      for (const auto& t : g.value(node.outputs[0]).tensors)
        m.saved_extra[static_cast<size_t>(node.id)] += Bytes(t.numel() * 8);
    }
  }
  return m;
}

}  // namespace

Bytes optimizer_step_temporaries(Bytes largest, Optimizer optimizer) {
  switch (optimizer) {
    case Optimizer::kSgd:
    case Optimizer::kSgdMomentum:
      return Bytes(0);
    case Optimizer::kAdam:
    case Optimizer::kAdamW:
      return largest * 2;
  }
  return Bytes(0);
}

double recurrent_saved_elements(const RecurrentLayout& layout) {
  const double hidden = static_cast<double>(layout.hidden);
  const double layer_directions = static_cast<double>(layout.layer_directions());
  const double inner_inputs =
      static_cast<double>((layout.layers - 1) * layout.directions) * layout.tokens * hidden;
  if (layout.gates == 1) {
    const double batch = layout.steps > 0 ? layout.tokens / static_cast<double>(layout.steps) : 0.0;
    return layer_directions * (layout.tokens + batch) * hidden + inner_inputs;
  }
  return layer_directions * 7 * layout.tokens * hidden + inner_inputs;
}

double recurrent_working_elements(const RecurrentLayout& layout) {
  const double directions = static_cast<double>(layout.directions);
  double most = 0;
  for (int64_t l = 0; l < layout.layers; ++l) {
    const bool last = l == layout.layers - 1;
    const double below = l > 0 ? directions : 0.0;
    const double outputs = layout.directions == 1 ? (last ? 1 : 2) : (last ? 4 : 6);
    most = std::max(most, below + static_cast<double>(layout.gates) + outputs);
  }
  return layout.tokens * static_cast<double>(layout.hidden) * most;
}

double recurrent_training_working_elements(const RecurrentLayout& layout) {
  const double stacks = layout.directions == 2 ? 2.0 : 0.0;
  return layout.tokens * static_cast<double>(layout.hidden) * (static_cast<double>(layout.gates) + stacks);
}

Bytes optimizer_state_bytes(Bytes params, Optimizer optimizer) {
  switch (optimizer) {
    case Optimizer::kSgd:
      return Bytes(0);
    case Optimizer::kSgdMomentum:
      return params;
    case Optimizer::kAdam:
    case Optimizer::kAdamW:
      break;
  }
  return params * 2.0;
}

std::string_view optimizer_name(Optimizer optimizer) {
  switch (optimizer) {
    case Optimizer::kSgd:
      return "sgd";
    case Optimizer::kSgdMomentum:
      return "sgd_momentum";
    case Optimizer::kAdam:
      return "adam";
    case Optimizer::kAdamW:
      break;
  }
  return "adamw";
}

Optimizer parse_optimizer(std::string_view name) {
  for (Optimizer o : {Optimizer::kSgd, Optimizer::kSgdMomentum, Optimizer::kAdam, Optimizer::kAdamW}) {
    if (optimizer_name(o) == name) return o;
  }
  PARTITA_FAIL("unknown optimizer '", name, "': use sgd, sgd_momentum, adam or adamw");
}

namespace {

Bytes tensor_bytes(const Value& v) {
  Bytes b(0);
  for (const auto& t : v.tensors) b += t.bytes();
  return b;
}

// Memory of a training step over [first, last] as backward walks it (one microbatch, whole batch).
struct TrainingSweep {
  Bytes io{0};         // tensors entering the range and its results, live for the whole step
  Bytes saved_all{0};  // everything saved for backward (end of forward)
  // At each node n, while its backward runs: saved tensors still needed, parameter gradients already
  // accumulated, gradients in flight (of values crossing n, and of n's inputs).
  std::vector<Bytes> saved, grads, flow;  // [n - first]
  // At each node n, while its forward runs: what nodes up to n saved, and the storages alive at n that none
  // of them saves (n's results included, read or not).
  std::vector<Bytes> forward;  // [n - first]
};

TrainingSweep training_sweep(const Graph& g, NodeId first, NodeId last) {
  const AutogradModel m = autograd_model(g);
  const size_t nv = static_cast<size_t>(g.num_values());
  const size_t len = static_cast<size_t>(last - first + 1);
  TrainingSweep s;
  s.saved.assign(len, Bytes(0));
  s.grads.assign(len, Bytes(0));
  s.flow.assign(len, Bytes(0));
  // Lifetimes of storage roots inside the range: defined at the first producing node (first - 1 when it comes
  // from outside), last used at the last reader (last + 1 when read after the range or a graph output).
  std::vector<NodeId> def(nv, kNoNode), end(nv, kNoNode), min_saver(nv, kNoNode);
  std::vector<bool> root_rg(nv, false), counted(nv, false), output(nv, false), beyond(nv, false);
  for (ValueId v : g.outputs()) output[static_cast<size_t>(v)] = true;
  for (NodeId n = first; n <= last; ++n) {
    const Node& node = g.node(n);
    for (ValueId id : node.inputs) {
      const Value& v = g.value(id);
      if (is_weight_or_constant(v)) continue;
      const size_t r = static_cast<size_t>(m.root[static_cast<size_t>(id)]);
      if (v.producer == kNoNode || v.producer < first) {
        if (!counted[r]) s.io += tensor_bytes(g.value(static_cast<ValueId>(r)));
        counted[r] = true;
        if (def[r] == kNoNode) def[r] = first - 1;
      }
      end[r] = std::max(end[r], n);
      root_rg[r] = root_rg[r] || m.requires_grad[static_cast<size_t>(id)];
    }
    for (ValueId id : node.outputs) {
      const size_t r = static_cast<size_t>(m.root[static_cast<size_t>(id)]);
      if (def[r] == kNoNode) def[r] = n;
      root_rg[r] = root_rg[r] || m.requires_grad[static_cast<size_t>(id)];
      const Value& v = g.value(id);
      const bool read_later = std::any_of(v.users.begin(), v.users.end(), [&](NodeId u) { return u > last; });
      if (read_later) beyond[r] = true;
      if (read_later || output[static_cast<size_t>(id)]) {
        if (!counted[r]) s.io += floating_bytes(g.value(static_cast<ValueId>(r)));
        counted[r] = true;
      }
    }
    for (ValueId r : m.saved[static_cast<size_t>(n)]) {
      if (min_saver[static_cast<size_t>(r)] == kNoNode) min_saver[static_cast<size_t>(r)] = n;
    }
  }
  // Saved storages live until backward has passed their earliest saver; pool indices until their own node.
  std::vector<Bytes> saved_from(len + 1, Bytes(0));  // bytes freed once backward passes node first + i
  for (size_t r = 0; r < nv; ++r) {
    if (min_saver[r] == kNoNode || counted[r]) continue;  // inputs and results are counted in io
    const Bytes b = floating_bytes(g.value(static_cast<ValueId>(r)));
    s.saved_all += b;
    saved_from[static_cast<size_t>(min_saver[r] - first)] += b;
  }
  for (NodeId n = first; n <= last; ++n) {
    s.saved_all += m.saved_extra[static_cast<size_t>(n)];
    saved_from[static_cast<size_t>(n - first)] += m.saved_extra[static_cast<size_t>(n)];
  }
  Bytes running(0);
  for (size_t i = 0; i < len; ++i) s.saved[i] = (running += saved_from[i]);
  // Unsaved storages alive at n in the forward: from their producer to their last reader in the range, or
  // until a node saves them (from then on they are in s.saved).
  std::vector<Bytes> unsaved_diff(len + 1, Bytes(0));
  for (size_t r = 0; r < nv; ++r) {
    if (def[r] == kNoNode || def[r] < first || counted[r]) continue;
    NodeId until = end[r] == kNoNode ? def[r] : std::max(end[r], def[r]);
    if (min_saver[r] != kNoNode) until = std::min(until, min_saver[r] - 1);
    if (until < def[r]) continue;
    const Bytes b = tensor_bytes(g.value(static_cast<ValueId>(r)));
    unsaved_diff[static_cast<size_t>(def[r] - first)] += b;
    unsaved_diff[static_cast<size_t>(until - first) + 1] -= b;
  }
  s.forward.assign(len, Bytes(0));
  running = Bytes(0);
  for (size_t i = 0; i < len; ++i) s.forward[i] = s.saved[i] + (running += unsaved_diff[i]);
  // A parameter's gradient appears when backward reaches its last reader in the range.
  std::vector<NodeId> last_reader(nv, kNoNode);
  for (NodeId n = first; n <= last; ++n) {
    for (ValueId id : g.node(n).inputs) {
      if (g.value(id).role == ValueRole::kParameter) last_reader[static_cast<size_t>(id)] = n;
    }
  }
  std::vector<Bytes> grad_at(len, Bytes(0));
  for (size_t v = 0; v < nv; ++v) {
    if (last_reader[v] != kNoNode)
      grad_at[static_cast<size_t>(last_reader[v] - first)] += g.value(static_cast<ValueId>(v)).bytes();
  }
  running = Bytes(0);
  for (size_t i = len; i-- > 0;) s.grads[i] = (running += grad_at[i]);
  // Gradients in flight at n: of every root that needs one and is live across n (defined at or before n,
  // read after it), plus of n's own inputs. Gradients of graph outputs come from the loss (an expanded
  // scalar for a sum) and are not counted.
  std::vector<Bytes> diff(len + 1, Bytes(0));
  for (size_t r = 0; r < nv; ++r) {
    if (!root_rg[r] || def[r] == kNoNode) continue;
    const NodeId lo = std::max(def[r], first);
    const NodeId hi = beyond[r] ? last + 1 : end[r];
    if (hi == kNoNode || hi <= lo) continue;
    const Bytes b = floating_bytes(g.value(static_cast<ValueId>(r)));
    diff[static_cast<size_t>(lo - first)] += b;
    diff[static_cast<size_t>(hi - first)] -= b;
  }
  running = Bytes(0);
  for (size_t i = 0; i < len; ++i) s.flow[i] = (running += diff[i]);
  for (NodeId n = first; n <= last; ++n) {
    for (ValueId id : g.node(n).inputs) {
      const Value& v = g.value(id);
      const size_t r = static_cast<size_t>(m.root[static_cast<size_t>(id)]);
      if (is_weight_or_constant(v) || !m.requires_grad[static_cast<size_t>(id)]) continue;
      if (beyond[r] || end[r] > n) continue;  // its gradient is already in flight across n
      s.flow[static_cast<size_t>(n - first)] += floating_bytes(v);
    }
  }
  return s;
}

}  // namespace

Bytes saved_activation_bytes(const Graph& graph, NodeId first, NodeId last) {
  check_range(graph, first, last);
  const TrainingSweep s = training_sweep(graph, first, last);
  return s.io + s.saved_all;
}

bool backward_makes_views(const Graph& graph, const Node& node) {
  if (op_is(node,
            {"cat", "concat", "stack", "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten",
             "transpose", "t", "permute", "unsqueeze", "squeeze", "movedim", "swapaxes", "alias", "detach"}))
    return true;
  if (!op_is(node, {"add", "add_"}) || node.inputs.size() < 2 || node.outputs.size() != 1) return false;
  if (node.inputs.size() > 2 && constant_double(graph, node.inputs[2]).value_or(0.0) != 1.0) return false;
  const TensorMeta* out = graph.value(node.outputs[0]).meta();
  for (size_t k = 0; k < 2; ++k) {
    const TensorMeta* in = graph.value(node.inputs[k]).meta();
    if (out == nullptr || in == nullptr || in->shape != out->shape) return false;
  }
  return true;
}

SavedByProducer saved_activations_by_producer(const Graph& graph) {
  const AutogradModel m = autograd_model(graph);
  SavedByProducer out;
  out.bytes.assign(static_cast<size_t>(graph.num_nodes()), Bytes(0));
  out.batch_free = out.bytes;
  const std::vector<bool> dep = batch_dependent(graph);
  out.root = m.root;
  out.requires_grad = m.requires_grad;
  out.saved.assign(static_cast<size_t>(graph.num_values()), false);
  for (const auto& roots : m.saved) {
    for (ValueId r : roots) out.saved[static_cast<size_t>(r)] = true;
  }
  for (size_t v = 0; v < out.saved.size(); ++v) {
    const ValueId r = m.root[v];
    if (static_cast<size_t>(r) != v) continue;  // aliases share their root's storage
    const Value& value = graph.value(r);
    if (out.saved[v] && value.producer != kNoNode) {
      out.bytes[static_cast<size_t>(value.producer)] += floating_bytes(value);
      if (!dep[v]) out.batch_free[static_cast<size_t>(value.producer)] += floating_bytes(value);
    }
  }
  for (size_t v = 0; v < out.saved.size(); ++v) out.saved[v] = out.saved[static_cast<size_t>(m.root[v])];
  for (size_t n = 0; n < out.bytes.size(); ++n) out.bytes[n] += m.saved_extra[n];
  return out;
}

StorageLifetimes storage_lifetimes(const Graph& graph, const std::vector<ValueId>& root) {
  const size_t nv = static_cast<size_t>(graph.num_values());
  StorageLifetimes out;
  out.born.assign(nv, -1);
  out.dies.assign(nv, -1);
  for (size_t v = 0; v < nv; ++v) {
    const Value& value = graph.value(static_cast<ValueId>(v));
    if (is_weight_or_constant(value) || value.tensors.empty()) continue;
    const size_t r = static_cast<size_t>(root[v]);
    if (r == v) out.born[r] = value.producer == kNoNode ? 0 : static_cast<int>(value.producer);
    for (NodeId u : value.users) out.dies[r] = std::max(out.dies[r], static_cast<int>(u));
  }
  for (ValueId id : graph.outputs())
    out.dies[static_cast<size_t>(root[static_cast<size_t>(id)])] = graph.num_nodes();
  return out;
}

std::vector<Bytes> live_bytes_per_node(const Graph& graph) {
  return live_bytes_per_node(graph, autograd_model(graph).root);
}

std::vector<Bytes> live_bytes_per_node(const Graph& graph, const std::vector<ValueId>& root) {
  const std::vector<double> whole(static_cast<size_t>(graph.num_values()), 1.0);
  std::vector<Bytes> live;
  for (double b : live_bytes_per_node(graph, root, whole)) live.push_back(Bytes(std::llround(b)));
  return live;
}

std::vector<double> live_bytes_per_node(const Graph& graph, const std::vector<ValueId>& root,
                                        const std::vector<double>& share) {
  PARTITA_ASSERT(root.size() == static_cast<size_t>(graph.num_values()), "one storage root per value");
  PARTITA_ASSERT(share.size() == root.size(), "one share per value");
  const int n = graph.num_nodes();
  const StorageLifetimes life = storage_lifetimes(graph, root);
  const auto held = [&](ValueId id) {
    const auto r = static_cast<size_t>(root[static_cast<size_t>(id)]);
    return static_cast<double>(graph.value(id).bytes().value()) * share[r];
  };
  std::vector<double> diff(static_cast<size_t>(n) + 1, 0.0);
  for (size_t r = 0; r < life.born.size(); ++r) {
    if (life.born[r] < 0) continue;
    const double b = held(static_cast<ValueId>(r));
    const int end = std::min(std::max(life.dies[r], life.born[r]), n - 1);
    diff[static_cast<size_t>(life.born[r])] += b;
    diff[static_cast<size_t>(end) + 1] -= b;
  }
  std::vector<double> live(static_cast<size_t>(n), 0.0);
  double alive = 0;
  for (int i = 0; i < n; ++i) live[static_cast<size_t>(i)] = (alive += diff[static_cast<size_t>(i)]);
  return live;
}

std::vector<KernelScratch> kernel_scratch(const Graph& graph) {
  std::vector<KernelScratch> out;
  for (const Node& node : graph.nodes()) {
    if (node.inputs.empty() || node.outputs.empty()) continue;
    const Value& x = graph.value(node.inputs[0]);
    const Value& y = graph.value(node.outputs[0]);
    if (op_is(node, {"max_pool1d", "max_pool2d", "max_pool3d"})) {
      KernelScratch k;
      k.node = node.id;
      for (const auto& t : y.tensors) k.indices += static_cast<double>(t.numel() * 8);
      out.push_back(k);
      continue;
    }
    if (classify_op(node) == OpClass::kRecurrent) {
      const auto layout = recurrent_layout(graph, node);
      const TensorMeta* xm = x.meta();
      if (!layout || !xm) continue;
      KernelScratch k;
      k.node = node.id;
      k.recurrent = recurrent_working_elements(*layout) * static_cast<double>(dtype_size(xm->dtype));
      k.recurrent_training =
          recurrent_training_working_elements(*layout) * static_cast<double>(dtype_size(xm->dtype));
      out.push_back(k);
      continue;
    }
    if (classify_op(node) != OpClass::kConv || node.inputs.size() < 2) continue;
    const TensorMeta* xm = x.meta();
    const TensorMeta* wm = graph.value(node.inputs[1]).meta();
    const TensorMeta* ym = y.meta();
    if (!xm || !wm || !ym || xm->shape.size() < 3 || wm->shape.size() < 3 || ym->shape.size() < 3) continue;
    KernelScratch k;
    k.node = node.id;
    k.convolution = true;
    k.input = static_cast<double>(x.bytes().value());
    k.output = static_cast<double>(y.bytes().value());
    k.weight = static_cast<double>(wm->bytes().value());
    k.rows = static_cast<double>(std::max<int64_t>(1, xm->shape[0]));
    k.input_elements = static_cast<double>(xm->numel());
    k.float32 = xm->dtype == DType::kFloat32;
    const bool by_name = node.op.find("transpose") != std::string::npos;
    const bool by_flag = op_is(node, {"_convolution", "convolution"}) && node.inputs.size() > 6 &&
                         constant_bool(graph, node.inputs[6]).value_or(false);
    k.transposed = by_name || by_flag;
    // weight [out, in / groups, kernel...]; fewer weight input channels than input channels: groups > 1.
    k.grouped = wm->shape[1] < xm->shape[1];
    const int64_t kh = wm->shape[wm->shape.size() - 2], kw = wm->shape.back();
    k.large_kernel = kh > 3 && kw > 3;
    const auto all_ones = [&](size_t arg) {
      if (node.inputs.size() <= arg) return true;  // the op's default: 1
      const auto v = constant_int_list(graph, node.inputs[arg]);
      return v && std::all_of(v->begin(), v->end(), [](int64_t e) { return e == 1; });
    };
    const bool pointwise =
        std::all_of(wm->shape.begin() + 2, wm->shape.end(), [](int64_t e) { return e == 1; });
    k.plain_pointwise = pointwise && all_ones(3) && all_ones(5);  // stride, dilation
    // im2col: (input channels per group x kernel area) rows by output positions, per row of the call.
    double kernel_area = 1, positions = 1;
    for (size_t d = 2; d < wm->shape.size(); ++d) kernel_area *= static_cast<double>(wm->shape[d]);
    for (size_t d = 2; d < ym->shape.size(); ++d) positions *= static_cast<double>(ym->shape[d]);
    k.columns = k.plain_pointwise ? 0.0
                                  : k.rows * static_cast<double>(wm->shape[1]) * kernel_area * positions *
                                        static_cast<double>(dtype_size(xm->dtype));
    out.push_back(k);
  }
  return out;
}

namespace {

// Whether LibTorch 1.13 runs a CPU convolution call on `fraction` of the graph's batch in oneDNN (else its
// native kernel); see kernel_scratch in the header.
bool runs_in_onednn(const KernelScratch& k, double fraction, const KernelSite& site) {
  const double rows = std::max(1.0, std::round(k.rows * fraction));
  return k.float32 && (!k.plain_pointwise || rows >= 16 || site.threads > 1) &&
         (k.grouped || k.large_kernel || rows > 1 || k.input_elements * fraction > 20480);
}

}  // namespace

double kernel_scratch_bytes(const KernelScratch& k, double fraction, const KernelSite& site) {
  if (k.recurrent > 0) return k.recurrent * fraction;
  if (!k.convolution) return k.indices * fraction;
  const double input = k.input * fraction, output = k.output * fraction;
  if (!site.cpu || k.transposed) return input + output;
  return runs_in_onednn(k, fraction, site) ? std::max(input + k.weight, output) : k.columns * fraction;
}

double backward_kernel_scratch_bytes(const KernelScratch& k, double fraction, const KernelSite& site) {
  if (!k.convolution || k.transposed || !site.cpu) return 0.0;
  return (runs_in_onednn(k, fraction, site) ? k.input : k.columns) * fraction;
}

double training_kernel_scratch_bytes(const KernelScratch& k, double fraction, const KernelSite& site) {
  return k.recurrent > 0 ? k.recurrent_training * fraction : kernel_scratch_bytes(k, fraction, site);
}

Bytes range_parameter_bytes(const Graph& graph, NodeId first, NodeId last, bool trainable_only) {
  check_range(graph, first, last);
  std::vector<bool> seen(static_cast<size_t>(graph.num_values()), false);
  Bytes b(0);
  for (NodeId n = first; n <= last; ++n) {
    for (ValueId id : graph.node(n).inputs) {
      const Value& v = graph.value(id);
      const bool counted =
          v.role == ValueRole::kParameter || (!trainable_only && v.role == ValueRole::kBuffer);
      if (!counted || seen[static_cast<size_t>(id)]) continue;
      seen[static_cast<size_t>(id)] = true;
      b += v.bytes();
    }
  }
  return b;
}

MemoryEstimate estimate_memory(const Graph& graph, NodeId first, NodeId last, bool training,
                               Optimizer optimizer, int microbatches_in_flight, double batch_fraction,
                               const KernelSite& site) {
  check_range(graph, first, last);
  PARTITA_CHECK(microbatches_in_flight >= 1, "estimate_memory: microbatches_in_flight is ",
                microbatches_in_flight, "; it must be at least 1");
  PARTITA_CHECK(batch_fraction > 0 && batch_fraction <= 1, "estimate_memory: batch_fraction is ",
                batch_fraction, "; it must be in (0, 1]");
  MemoryEstimate m;
  m.parameters = range_parameter_bytes(graph, first, last, /*trainable_only=*/false);
  const double per_device = batch_fraction * microbatches_in_flight;
  if (training) {
    const Bytes trainable = range_parameter_bytes(graph, first, last, /*trainable_only=*/true);
    m.optimizer_state = optimizer_state_bytes(trainable, optimizer);
    // The peak comes while backward runs: at each node, the saved tensors still needed, the parameter
    // gradients accumulated so far and the gradients in flight. Other microbatches in flight keep all of
    // theirs (inputs, results and everything saved).
    const TrainingSweep s = training_sweep(graph, first, last);
    const double others = batch_fraction * (microbatches_in_flight - 1);
    double best = -1;
    // The forward comes first, before any gradient exists (the engine frees them after each step): at each
    // node, what the nodes up to it saved, what else is alive at it and its kernel's working memory (a
    // recurrent layer's projected sequence, a convolution's buffers).
    std::vector<double> scratch(s.forward.size(), 0.0);
    for (const KernelScratch& k : kernel_scratch(graph)) {
      if (k.node >= first && k.node <= last)
        scratch[static_cast<size_t>(k.node - first)] = training_kernel_scratch_bytes(k, batch_fraction, site);
    }
    for (size_t i = 0; i < s.forward.size(); ++i) {
      const double total = batch_fraction * static_cast<double>((s.io + s.forward[i]).value()) + scratch[i];
      if (total <= best) continue;
      best = total;
      m.gradients = Bytes(0);
      m.activations = (s.io + s.saved[i]) * batch_fraction + (s.io + s.saved_all) * others;
      m.workspace =
          Bytes(std::llround(total - static_cast<double>(((s.io + s.saved[i]) * batch_fraction).value())));
    }
    for (size_t i = 0; i < s.saved.size(); ++i) {
      const double total = static_cast<double>(s.grads[i].value()) +
                           batch_fraction * static_cast<double>((s.io + s.saved[i] + s.flow[i]).value());
      if (total <= best) continue;
      best = total;
      m.gradients = s.grads[i];
      m.activations = (s.io + s.saved[i]) * batch_fraction + (s.io + s.saved_all) * others;
      m.workspace = s.flow[i] * batch_fraction;
    }
    return m;
  }
  // Inference keeps each in-flight microbatch's input to the range; the working set is the rest of what is
  // alive at once while one microbatch runs.
  std::vector<bool> seen(static_cast<size_t>(graph.num_values()), false);
  const Bytes inputs = range_input_bytes(graph, first, last, seen);
  const std::vector<Bytes> live = live_bytes_per_node(graph);
  double peak = static_cast<double>(std::max_element(live.begin() + first, live.begin() + last + 1)->value() *
                                    batch_fraction);
  for (const KernelScratch& k : kernel_scratch(graph)) {
    if (k.node < first || k.node > last) continue;
    const double alive = static_cast<double>(live[static_cast<size_t>(k.node)].value()) * batch_fraction;
    peak = std::max(peak, alive + kernel_scratch_bytes(k, batch_fraction, site));
  }
  m.activations = inputs * per_device;
  m.workspace =
      Bytes(std::llround(std::max(0.0, peak - static_cast<double>(inputs.value()) * batch_fraction)));
  return m;
}

}  // namespace partita

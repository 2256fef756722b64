#include "tensor_shards.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <optional>
#include <set>

#include "partita/core/error.h"
#include "partita/graph/constant_value.h"
#include "partita/graph/op_names.h"
#include "partita/search/tensor_model.h"

namespace partita::detail {

namespace {

using Kind = InputRewrite::Kind;

const std::set<std::string> kPointwise = {
    "aten::add",         "aten::add_",       "aten::sub",      "aten::sub_",        "aten::mul",
    "aten::mul_",        "aten::div",        "aten::div_",     "aten::relu",        "aten::relu_",
    "aten::gelu",        "aten::gelu_",      "aten::tanh",     "aten::tanh_",       "aten::sigmoid",
    "aten::sigmoid_",    "aten::silu",       "aten::silu_",    "aten::hardtanh",    "aten::hardtanh_",
    "aten::hardswish",   "aten::hardswish_", "aten::elu",      "aten::elu_",        "aten::leaky_relu",
    "aten::leaky_relu_", "aten::dropout",    "aten::dropout_", "aten::contiguous",  "aten::clone",
    "aten::neg",         "aten::exp",        "aten::log",      "aten::sqrt",        "aten::rsqrt",
    "aten::abs",         "aten::square",     "aten::erf",      "aten::detach",      "aten::alias",
    "aten::to",          "aten::type_as",    "aten::pow",      "aten::masked_fill", "aten::masked_fill_",
    "aten::where",       "aten::maximum",    "aten::minimum",  "aten::clamp",       "aten::clamp_",
    "aten::softplus",    "aten::mish",       "aten::rsub"};

std::string describe(const Node& node) {
  std::string s = fmt::format("node {} {}", node.id, node.op);
  if (!node.scope.empty()) s += fmt::format(" ({})", node.scope);
  if (!node.source.empty()) s += fmt::format(" at {}", node.source);
  return s;
}

[[noreturn]] void refuse(const Node& node, const std::string& why) {
  PARTITA_FAIL("tensor parallelism cannot split ", describe(node), ": ", why,
               "; plan with --strategy data, pipeline or hybrid");
}

const std::vector<int64_t>* shape_of(const Graph& g, ValueId v) {
  const Value& val = g.value(v);
  return val.kind == ValueKind::kTensor && val.meta() ? &val.meta()->shape : nullptr;
}

int normalize(int64_t dim, size_t rank) {
  return static_cast<int>(dim < 0 ? dim + static_cast<int64_t>(rank) : dim);
}

int64_t product(const std::vector<int64_t>& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < s.size(); ++i) p *= s[i];
  return p;
}

// Where dim `d` (split into `parts` = blocks x degree parts) of `in` goes when viewed as `out`: the same
// extent, the outer dim of a split (when it divides into the parts), or a merge it is the outermost dim of.
// -1 when the split dim does not survive the view whole.
int map_view(const std::vector<int64_t>& in, const std::vector<int64_t>& out, int d, int64_t parts) {
  const int64_t before = product(in, 0, static_cast<size_t>(d));
  const int64_t extent = in[static_cast<size_t>(d)];
  int64_t prefix = 1;
  for (size_t k = 0; k < out.size(); ++k) {
    if (prefix == before && out[k] != 1) {
      if (out[k] == extent) return static_cast<int>(k);
      if (extent % out[k] == 0) return out[k] % parts == 0 ? static_cast<int>(k) : -1;  // a split
      if (out[k] % extent == 0) {  // a merge: the dims after d must make up the rest
        int64_t merged = extent;
        for (size_t j = static_cast<size_t>(d) + 1; j < in.size() && merged < out[k]; ++j) merged *= in[j];
        return merged == out[k] ? static_cast<int>(k) : -1;
      }
      return -1;
    }
    prefix *= out[k];
    if (prefix > before) return -1;
  }
  return -1;
}

struct Pass {
  const Graph& g;
  int degree;
  std::vector<TensorRole> roles;
  TensorShardPlan plan;

  Shard& shard(ValueId v) { return plan.shard[static_cast<size_t>(v)]; }
  bool split(ValueId v) { return shard(v).split(); }

  int64_t constant_or_refuse(const Node& n, size_t input, const char* what) {
    const auto c = constant_int(g, n.inputs.at(input));
    if (!c) refuse(n, fmt::format("its {} is not a constant", what));
    return *c;
  }

  void check_divides(const Node& n, int64_t extent, int64_t parts, const std::string& what) {
    if (extent % parts != 0)
      refuse(n, fmt::format("its {} ({}) do not split into {} equal parts", what, extent, parts));
  }

  // How many equal parts the users of a column-split output cut its last dim into (q, k and v of one
  // projection), looking through views that keep that dim (a Conv1D's addmm output viewed back to 3-D), so
  // the weight is split block by block; 1 when none does.
  int blocks_for(ValueId out) {
    const auto* s = shape_of(g, out);
    if (!s || s->empty()) return 1;
    for (NodeId u : g.value(out).users) {
      const Node& user = g.node(u);
      if (user.inputs.empty() || user.inputs[0] != out) continue;
      if (user.op == "aten::view" || user.op == "aten::reshape") {
        const auto* vs = shape_of(g, user.outputs.at(0));
        if (vs && !vs->empty() && vs->back() == s->back()) {
          if (const int b = blocks_for(user.outputs[0]); b > 1) return b;
        }
        continue;
      }
      const bool chunk = user.op == "aten::chunk";
      if (!chunk && user.op != "aten::split" && user.op != "aten::unsafe_split") continue;
      if (user.inputs.size() < 3) continue;
      const auto amount = constant_int(g, user.inputs[1]);
      const auto dim = constant_int(g, user.inputs[2]);
      if (!amount || !dim || *amount <= 0 || normalize(*dim, s->size()) != static_cast<int>(s->size()) - 1)
        continue;
      const int64_t full = s->back();
      const int64_t parts = chunk ? *amount : (full % *amount == 0 ? full / *amount : 0);
      if (parts > 1) return static_cast<int>(parts);
    }
    return 1;
  }

  // Where a weight matmul's operands are: aten::linear(x, W[out, in], b), aten::matmul / aten::mm(x, W[in,
  // out]), aten::addmm(b, x, W[in, out]) (a Conv1D), with W a 2-D parameter.
  struct WeightMatmul {
    size_t x = 0, weight = 1;
    int bias = -1;             // input index; -1: none
    int weight_out = 0;        // W's dim of the output features (the other: the input features)
    bool bias_needed = false;  // addmm needs a tensor where linear takes None
  };
  WeightMatmul weight_matmul(const Node& n) {
    WeightMatmul w;
    if (n.op == "aten::linear") {
      w.bias = n.inputs.size() > 2 && !is_none(g, n.inputs[2]) ? 2 : -1;
    } else if (n.op == "aten::matmul" || n.op == "aten::mm") {
      w.weight_out = 1;
    } else if (n.op == "aten::addmm") {
      w = WeightMatmul{1, 2, 0, 1, true};
    } else {
      w.weight = n.inputs.size();  // not one of them
    }
    const bool ok = w.weight < n.inputs.size() && g.value(n.inputs[w.weight]).role == ValueRole::kParameter &&
                    shape_of(g, n.inputs[w.weight]) && shape_of(g, n.inputs[w.weight])->size() == 2 &&
                    shape_of(g, n.inputs[w.x]) && shape_of(g, n.outputs.at(0)) &&
                    (w.bias < 0 || (shape_of(g, n.inputs[static_cast<size_t>(w.bias)]) &&
                                    shape_of(g, n.inputs[static_cast<size_t>(w.bias)])->size() == 1));
    if (!ok)
      refuse(n,
             "a weight matmul is split only as aten::linear(x, W, b), aten::matmul(x, W), aten::mm(x, W) or "
             "aten::addmm(b, x, W) with W a 2-D parameter (and b 1-D)");
    return w;
  }

  void column(const Node& n, NodeShard& ns) {
    const WeightMatmul w = weight_matmul(n);
    if (split(n.inputs[w.x])) refuse(n, "it opens a column split but its input is already split");
    const ValueId out = n.outputs[0];
    const auto& s = *shape_of(g, out);
    const int blocks = blocks_for(out);
    check_divides(n, s.back(), int64_t{blocks} * degree, "output features");
    ns.inputs[w.weight] = {Kind::kPart, Shard{w.weight_out, blocks}, -1};
    if (w.bias >= 0) ns.inputs[static_cast<size_t>(w.bias)] = {Kind::kPart, Shard{0, blocks}, -1};
    ns.splits = true;
    shard(out) = Shard{static_cast<int>(s.size()) - 1, blocks};
  }

  void row(const Node& n, NodeShard& ns) {
    const WeightMatmul w = weight_matmul(n);
    const ValueId x = n.inputs[w.x];
    const auto& xs = *shape_of(g, x);
    const int last = static_cast<int>(xs.size()) - 1;
    int blocks = 1;
    if (split(x)) {
      if (shard(x).dim != last)
        refuse(n, fmt::format("it closes a row split but its input is split along dim {}, not the last",
                              shard(x).dim));
      blocks = shard(x).blocks;
    } else {
      check_divides(n, xs.back(), degree, "input features");
      ns.inputs[w.x] = {Kind::kPart, Shard{last, 1}, -1};
    }
    ns.inputs[w.weight] = {Kind::kPart, Shard{1 - w.weight_out, blocks}, -1};
    if (w.bias >= 0)
      ns.inputs[static_cast<size_t>(w.bias)].kind =
          w.bias_needed ? Kind::kZeroOnOthers : Kind::kFirstDeviceOnly;
    ns.splits = true;
    ns.all_reduce = true;
    ++plan.all_reduces;
  }

  void vocabulary(const Node& n, NodeShard& ns) {
    if (n.inputs.size() < 3 || split(n.inputs[1]))
      refuse(n, "an embedding's ids must be whole on every device");
    const auto padding = constant_int(g, n.inputs[2]);
    if (!padding || *padding != -1) refuse(n, "an embedding with a padding index is not split by table rows");
    check_divides(n, shape_of(g, n.inputs[0])->at(0), degree, "table rows");
    ns.inputs[0] = {Kind::kPart, Shard{0, 1}, -1};
    ns.splits = ns.all_reduce = ns.vocabulary = true;
    ++plan.all_reduces;
  }

  // Elementwise with broadcasting: every split operand must land on the same output dim; a replicated
  // operand that is full size there is sliced, one of size 1 (or without that dim) broadcasts.
  void pointwise(const Node& n, NodeShard& ns, const std::vector<size_t>& tensor_inputs) {
    const auto* os = shape_of(g, n.outputs.at(0));
    if (!os) refuse(n, "its output's shape is unknown");
    const int ro = static_cast<int>(os->size());
    std::optional<Shard> out;
    for (size_t i : tensor_inputs) {
      const ValueId v = n.inputs[i];
      if (!split(v)) continue;
      const Shard s{shard(v).dim + ro - static_cast<int>(shape_of(g, v)->size()), shard(v).blocks};
      if (out && !(*out == s)) refuse(n, "its operands are split along different dims");
      out = s;
    }
    if (is_in_place_op(n.op) && !split(n.inputs[0]))
      refuse(n, "it updates a whole tensor in place with a split one");
    for (size_t i : tensor_inputs) {
      const ValueId v = n.inputs[i];
      if (split(v)) continue;
      const auto& s = *shape_of(g, v);
      const int a = out->dim - (ro - static_cast<int>(s.size()));
      if (a < 0 || s[static_cast<size_t>(a)] == 1) continue;
      if (s[static_cast<size_t>(a)] != (*os)[static_cast<size_t>(out->dim)])
        refuse(n, fmt::format("operand '{}' has {} entries along the split dim, not {} or 1", g.value(v).name,
                              s[static_cast<size_t>(a)], (*os)[static_cast<size_t>(out->dim)]));
      ns.inputs[i] = {Kind::kPart, Shard{a, out->blocks}, -1};
    }
    ns.splits = true;
    shard(n.outputs[0]) = *out;
  }

  void matmul(const Node& n, NodeShard& ns) {
    const auto* as = shape_of(g, n.inputs[0]);
    const auto* bs = shape_of(g, n.inputs[1]);
    const auto* os = shape_of(g, n.outputs.at(0));
    if (!as || !bs || !os || as->size() < 2 || bs->size() < 2)
      refuse(n, "a split matmul needs 2-D operands or more");
    const int ra = static_cast<int>(as->size()), rb = static_cast<int>(bs->size()),
              ro = static_cast<int>(os->size());
    std::optional<Shard> out;
    bool batch = false;
    auto land = [&](ValueId v, int rank, int contraction, int kept) {
      if (!split(v)) return;
      const Shard s = shard(v);
      if (s.dim == contraction) refuse(n, "it contracts over the split dim (a partial sum)");
      Shard o{s.dim == kept ? ro - (kept == rank - 1 ? 1 : 2) : s.dim + ro - rank, s.blocks};
      batch = batch || s.dim < rank - 2;
      if (out && !(*out == o)) refuse(n, "its operands are split along different dims");
      out = o;
    };
    land(n.inputs[0], ra, ra - 1, ra - 2);
    land(n.inputs[1], rb, rb - 2, rb - 1);
    if (batch) {  // a replicated operand full size along that batch dim is sliced
      for (size_t i = 0; i < 2; ++i) {
        const ValueId v = n.inputs[i];
        if (split(v)) continue;
        const auto& s = *shape_of(g, v);
        const int a = out->dim - (ro - static_cast<int>(s.size()));
        if (a < 0 || a >= static_cast<int>(s.size()) - 2 || s[static_cast<size_t>(a)] == 1) continue;
        ns.inputs[i] = {Kind::kPart, Shard{a, out->blocks}, -1};
      }
    } else if (split(n.inputs[0]) && split(n.inputs[1])) {
      refuse(n, "both operands are split along their matrix dims");
    }
    ns.splits = true;
    shard(n.outputs[0]) = *out;
  }

  void view(const Node& n, NodeShard& ns, bool runtime_shape) {
    const ValueId in = n.inputs[0];
    const auto* is = shape_of(g, in);
    const auto* os = shape_of(g, n.outputs.at(0));
    if (!is || !os) refuse(n, "its shapes are unknown");
    const Shard s = shard(in);
    const int d = map_view(*is, *os, s.dim, int64_t{s.blocks} * degree);
    if (d < 0)
      refuse(n, fmt::format("it reshapes {} into {} and the split dim {} does not stay whole",
                            fmt::join(*is, "x"), fmt::join(*os, "x"), s.dim));
    if (runtime_shape) ns.inputs[1] = {Kind::kDivideEntry, {}, d};
    ns.splits = true;
    shard(n.outputs[0]) = Shard{d, s.blocks};
  }

  void node(const Node& n) {
    NodeShard& ns = plan.nodes[static_cast<size_t>(n.id)];
    ns.inputs.assign(n.inputs.size(), InputRewrite{});
    switch (roles[static_cast<size_t>(n.id)]) {
      case TensorRole::kColumn:
        return column(n, ns);
      case TensorRole::kRow:
        return row(n, ns);
      case TensorRole::kVocabulary:
        return vocabulary(n, ns);
      default:
        break;
    }
    std::vector<size_t> tensor_inputs;
    bool any_split = false;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const ValueId v = n.inputs[i];
      if (shape_of(g, v)) tensor_inputs.push_back(i);
      any_split = any_split || split(v);
    }
    if (!any_split) return;  // replicated: every device runs it whole
    const Shard s0 = shard(n.inputs[0]);
    const auto* s0shape = shape_of(g, n.inputs[0]);
    const size_t r0 = s0shape ? s0shape->size() : 0;
    const std::string& op = n.op;
    auto keep = [&](Shard out) {
      ns.splits = true;
      for (ValueId o : n.outputs) shard(o) = out;
    };
    if (kPointwise.count(op)) return pointwise(n, ns, tensor_inputs);
    if (op == "aten::matmul" || op == "aten::bmm") return matmul(n, ns);
    if (!split(n.inputs[0])) {
      const auto first = std::find_if(n.inputs.begin(), n.inputs.end(), [&](ValueId v) { return split(v); });
      refuse(n, fmt::format("it reads the split tensor '{}' in a position it cannot split",
                            g.value(*first).name));
    }
    for (size_t i = 1; i < n.inputs.size(); ++i) {
      if (split(n.inputs[i]) && op != "prim::ListConstruct")
        refuse(n, fmt::format("it reads several split tensors ('{}')", g.value(n.inputs[i]).name));
    }
    if (op == "aten::transpose") {
      const int a = normalize(constant_or_refuse(n, 1, "dim"), r0);
      const int b = normalize(constant_or_refuse(n, 2, "dim"), r0);
      return keep(Shard{s0.dim == a ? b : (s0.dim == b ? a : s0.dim), s0.blocks});
    }
    if (op == "aten::t") return keep(Shard{s0.dim == 0 ? 1 : 0, s0.blocks});
    if (op == "aten::permute") {
      const auto dims = constant_int_list(g, n.inputs.at(1));
      if (!dims) refuse(n, "its dims are not constants");
      for (size_t k = 0; k < dims->size(); ++k)
        if (normalize((*dims)[k], r0) == s0.dim) return keep(Shard{static_cast<int>(k), s0.blocks});
      refuse(n, "its dims do not name the split dim");
    }
    if (op == "aten::unsqueeze") {
      const int d = normalize(constant_or_refuse(n, 1, "dim"), r0 + 1);
      return keep(Shard{s0.dim >= d ? s0.dim + 1 : s0.dim, s0.blocks});
    }
    if (op == "aten::view" || op == "aten::reshape") return view(n, ns, true);
    if (op == "aten::flatten" || op == "aten::squeeze" || op == "aten::unflatten") return view(n, ns, false);
    if (op == "aten::softmax" || op == "aten::log_softmax") {
      if (normalize(constant_or_refuse(n, 1, "dim"), r0) == s0.dim)
        refuse(n, "it normalizes along the split dim");
      return keep(s0);
    }
    if (op == "aten::split" || op == "aten::unsafe_split" || op == "aten::chunk") {
      const int d = normalize(constant_or_refuse(n, 2, "dim"), r0);
      if (d != s0.dim) return keep(s0);
      const int64_t full = (*s0shape)[static_cast<size_t>(d)];
      const int64_t amount = constant_or_refuse(n, 1, "size");
      const int64_t parts =
          op == "aten::chunk" ? amount : (amount > 0 && full % amount == 0 ? full / amount : 0);
      if (parts != s0.blocks)
        refuse(n, fmt::format("it cuts the split dim into {} parts, but the weight before it was split as {} "
                              "block(s)",
                              parts, s0.blocks));
      if (op != "aten::chunk") ns.inputs[1] = {Kind::kDivide, {}, -1};
      return keep(Shard{d, 1});
    }
    if (op == "prim::ListUnpack") return keep(s0);
    if (op == "prim::ListConstruct") {
      for (ValueId v : n.inputs) {
        if (!(shard(v) == s0)) refuse(n, "it lists tensors split differently (or split and whole)");
      }
      return keep(s0);
    }
    if (op == "aten::cat") {
      const int64_t d = constant_or_refuse(n, 1, "dim");
      const auto& elements = g.value(n.inputs[0]).tensors;
      if (elements.empty() || normalize(d, elements[0].shape.size()) == s0.dim)
        refuse(n, "it concatenates along the split dim");
      return keep(s0);
    }
    if (op == "aten::size") {
      if (n.inputs.size() == 1) {
        ns.scale_output_entry = s0.dim;
      } else if (normalize(constant_or_refuse(n, 1, "dim"), r0) == s0.dim) {
        ns.scale_output_entry = -1;
      }
      return;  // a number (or list of numbers): the same on every device
    }
    refuse(n, fmt::format("it reads '{}', which is split along dim {}, and {} is not split by the runner",
                          g.value(n.inputs[0]).name, s0.dim, op));
  }
};

}  // namespace

TensorShardPlan plan_tensor_shards(const Graph& graph, int degree) {
  PARTITA_ASSERT(degree >= 2, "tensor-parallel degree ", degree);
  Pass pass{graph, degree, tensor_roles(graph), {}};
  TensorShardPlan& plan = pass.plan;
  plan.degree = degree;
  plan.shard.assign(static_cast<size_t>(graph.num_values()), Shard{});
  plan.nodes.resize(static_cast<size_t>(graph.num_nodes()));
  for (const Node& n : graph.nodes()) {
    pass.node(n);
    if (plan.nodes[static_cast<size_t>(n.id)].splits) ++plan.split_nodes;
  }
  for (ValueId v : graph.outputs()) {
    const bool split = plan.shard[static_cast<size_t>(v)].split();
    PARTITA_CHECK(!split || graph.value(v).kind == ValueKind::kTensor,
                  "tensor parallelism cannot gather the ", "split graph output '", graph.value(v).name,
                  "' (not a tensor); plan with --strategy data, ", "pipeline or hybrid");
    plan.gather.push_back(split);
  }
  return plan;
}

}  // namespace partita::detail

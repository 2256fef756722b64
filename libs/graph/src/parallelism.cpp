#include <algorithm>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "partita/graph/analysis.h"
#include "partita/graph/constant_value.h"
#include "partita/graph/op_names.h"

namespace partita {

namespace {

bool in(std::string_view op, std::initializer_list<std::string_view> ops) {
  return std::find(ops.begin(), ops.end(), op) != ops.end();
}

// A weight known ahead of the run, possibly seen through a transpose/view/cast (addmm takes weight.t()).
bool weight_like(const Graph& g, ValueId v) {
  for (int hops = 0; hops < 8; ++hops) {
    const Value& value = g.value(v);
    if (value.role == ValueRole::kParameter || value.role == ValueRole::kBuffer) return true;
    if (value.role == ValueRole::kConstant) return !value.tensors.empty();
    if (value.producer == kNoNode) return false;
    const Node& p = g.node(value.producer);
    if (!in(functional_op(p.op),
            {"aten::t", "aten::transpose", "aten::permute", "aten::view", "aten::reshape", "aten::to",
             "aten::detach", "aten::contiguous", "aten::numpy_T"}) ||
        p.inputs.empty()) {
      return false;
    }
    v = p.inputs[0];
  }
  return false;
}

// Position of the dim argument of ops that mix values along a dim, and the input count below which the
// overload has no dim (a full reduction: sum(self, dtype), max(self), std(self, unbiased)).
struct DimArg {
  size_t index;
  size_t min_inputs;
};
const std::unordered_map<std::string_view, DimArg>& dim_ops() {
  static const std::unordered_map<std::string_view, DimArg> table = {
      {"aten::sum", {1, 3}},
      {"aten::mean", {1, 3}},
      {"aten::prod", {1, 3}},
      {"aten::amax", {1, 2}},
      {"aten::amin", {1, 2}},
      {"aten::max", {1, 3}},
      {"aten::min", {1, 3}},
      {"aten::std", {1, 3}},
      {"aten::var", {1, 3}},
      {"aten::std_mean", {1, 3}},
      {"aten::var_mean", {1, 3}},
      {"aten::norm", {2, 3}},
      {"aten::logsumexp", {1, 2}},
      {"aten::all", {1, 2}},
      {"aten::any", {1, 2}},
      {"aten::argmax", {1, 2}},
      {"aten::argmin", {1, 2}},
      {"aten::count_nonzero", {1, 2}},
      {"aten::cumsum", {1, 2}},
      {"aten::cumprod", {1, 2}},
      {"aten::softmax", {1, 2}},
      {"aten::log_softmax", {1, 2}},
      {"aten::frobenius_norm", {1, 2}},      // (self, dim, keepdim)
      {"aten::linalg_vector_norm", {2, 3}},  // (self, ord, dim, keepdim, dtype); the matrix norms alike
      {"aten::linalg_norm", {2, 3}},
      {"aten::linalg_matrix_norm", {2, 3}}};
  return table;
}

bool is_batch_dim(int64_t dim, const TensorMeta* meta) {
  return dim == 0 || (meta && dim == -static_cast<int64_t>(meta->shape.size()));
}

void refuse(NodeParallelism& p, std::string reason, bool suspect = false) {
  p.batch_splittable = false;
  p.suspect = suspect;
  p.reason = std::move(reason);
}

void check_dim_op(const Graph& g, const Node& n, DimArg arg, NodeParallelism& p) {
  const TensorMeta* meta = g.value(n.inputs[0]).meta();
  const std::string op(functional_op(n.op));
  if ((op == "aten::max" || op == "aten::min") && n.inputs.size() == 2) return;  // elementwise max(a, b)
  if (n.inputs.size() < arg.min_inputs || arg.index >= n.inputs.size() || is_none(g, n.inputs[arg.index])) {
    return refuse(p, op + " reduces over all dims, including the batch (dim 0)");
  }
  const auto dims = constant_int_list(g, n.inputs[arg.index]);
  if (!dims) return refuse(p, op + " has a non-constant dim that may be the batch (dim 0)", true);
  if (dims->empty() && (op == "aten::amax" || op == "aten::amin" || op == "aten::sum" || op == "aten::mean" ||
                        op == "aten::frobenius_norm" || op == "aten::linalg_vector_norm")) {
    return refuse(p, op + " with dim=[] reduces over all dims, including the batch (dim 0)");
  }
  if (std::any_of(dims->begin(), dims->end(), [&](int64_t d) { return is_batch_dim(d, meta); })) {
    refuse(p, op + " works along dim 0, the batch");
  }
}

void check_slicing(const Graph& g, const Node& n, std::string_view op, NodeParallelism& p) {
  if (n.inputs.size() < 2) return;
  const TensorMeta* meta = g.value(n.inputs[0]).meta();
  const auto dim = constant_int(g, n.inputs[1]);
  if (!dim || !is_batch_dim(*dim, meta)) return;
  if (op == "aten::select") return refuse(p, "select on dim 0 picks one sample of the batch");
  // slice(self, dim, start, end, step): the full range x[:] is a no-op that traces emit.
  const auto start = n.inputs.size() > 2 ? constant_int(g, n.inputs[2]) : std::optional<int64_t>(0);
  const auto end = n.inputs.size() > 3 ? constant_int(g, n.inputs[3]) : std::nullopt;
  const auto step = n.inputs.size() > 4 ? constant_int(g, n.inputs[4]) : std::optional<int64_t>(1);
  const bool open_end = n.inputs.size() <= 3 || is_none(g, n.inputs[3]) ||
                        (end && meta && !meta->shape.empty() && *end >= meta->shape[0]);
  const bool open_start = n.inputs.size() <= 2 || is_none(g, n.inputs[2]) || start == 0;
  if (!(open_start && open_end && step == 1)) refuse(p, "slice on dim 0 keeps only part of the batch");
}

void check_view(const Graph& g, const Node& n, NodeParallelism& p) {
  if (n.inputs.size() < 2) return;
  const auto shape = constant_int_list(g, n.inputs[1]);
  if (!shape || shape->empty() || shape->front() == -1) return;
  std::string printed = "[";
  for (size_t i = 0; i < shape->size(); ++i) printed += (i ? ", " : "") + std::to_string((*shape)[i]);
  refuse(p,
         "suspect: " + std::string(functional_op(n.op)) + " to the constant shape " + printed +
             "] may have the traced batch size baked in (write the batch dim as -1 or x.size(0))",
         true);
}

// q @ k^T -> (scale, mask, softmax, dropout) -> @ v, with activations on both sides of each matmul.
void mark_attention(const Graph& g, const Node& a, std::vector<NodeParallelism>& out) {
  const std::string_view op = functional_op(a.op);
  if (!in(op, {"aten::matmul", "aten::bmm"}) || a.outputs.empty()) return;
  if (std::any_of(a.inputs.begin(), a.inputs.end(), [&](ValueId v) { return weight_like(g, v); })) return;
  std::vector<NodeId> chain;
  bool seen_softmax = false;
  ValueId v = a.outputs[0];
  for (int hops = 0; hops < 10 && g.value(v).users.size() == 1; ++hops) {
    const Node& u = g.node(g.value(v).users[0]);
    const std::string_view uop = functional_op(u.op);
    if (seen_softmax && in(uop, {"aten::matmul", "aten::bmm"}) && u.inputs[0] == v) {
      for (NodeId id : {a.id, u.id}) out[id].tensor_parallel = TensorParallel::kHeads;
      for (NodeId id : chain) out[id].tensor_parallel = TensorParallel::kHeads;
      return;
    }
    if (uop == "aten::softmax" || uop == "aten::_softmax") {
      seen_softmax = true;
      chain.push_back(u.id);
    } else if (!in(uop, {"aten::div", "aten::mul", "aten::add", "aten::sub", "aten::masked_fill",
                         "aten::where", "aten::dropout", "aten::to", "aten::type_as", "aten::contiguous"}) ||
               u.outputs.empty()) {
      return;
    }
    v = u.outputs[0];
  }
}

TensorParallel weight_split(const Graph& g, const Node& n, std::string_view op) {
  auto weight_at = [&](size_t i) { return i < n.inputs.size() && weight_like(g, n.inputs[i]); };
  if (op == "aten::linear") return weight_at(1) ? TensorParallel::kColumnRow : TensorParallel::kNone;
  if (in(op, {"aten::addmm", "aten::mm", "aten::matmul"})) {
    const size_t first = op == "aten::addmm" ? 1 : 0;
    return weight_at(first) || weight_at(first + 1) ? TensorParallel::kColumnRow : TensorParallel::kNone;
  }
  if (in(op, {"aten::_convolution", "aten::convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d",
              "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d"})) {
    return weight_at(1) ? TensorParallel::kOutputChannel : TensorParallel::kNone;
  }
  if (op == "aten::scaled_dot_product_attention") return TensorParallel::kHeads;
  return TensorParallel::kNone;
}

}  // namespace

std::vector<bool> batch_dependent(const Graph& g) {
  std::vector<bool> dep(g.values().size(), false);
  for (ValueId v : g.inputs()) dep[v] = !g.value(v).shared;
  for (NodeId n : topological_order(g)) {
    const auto& node = g.node(n);
    const bool any = std::any_of(node.inputs.begin(), node.inputs.end(), [&](ValueId v) { return dep[v]; });
    for (ValueId out : node.outputs) dep[out] = any;
  }
  return dep;
}

std::vector<ValueId> storage_roots(const Graph& g) {
  // Ops whose outputs may share their first input's storage (some only sometimes, like reshape, contiguous
  // or to: counted as views, since a needless copy costs little and a missed write is wrong).
  static const std::unordered_set<std::string_view> kViews = {"aten::view",
                                                              "aten::view_as",
                                                              "aten::reshape",
                                                              "aten::reshape_as",
                                                              "aten::_reshape_alias",
                                                              "aten::flatten",
                                                              "aten::unflatten",
                                                              "aten::squeeze",
                                                              "aten::unsqueeze",
                                                              "aten::select",
                                                              "aten::slice",
                                                              "aten::narrow",
                                                              "aten::transpose",
                                                              "aten::t",
                                                              "aten::permute",
                                                              "aten::movedim",
                                                              "aten::swapaxes",
                                                              "aten::swapdims",
                                                              "aten::expand",
                                                              "aten::expand_as",
                                                              "aten::as_strided",
                                                              "aten::diagonal",
                                                              "aten::unfold",
                                                              "aten::detach",
                                                              "aten::alias",
                                                              "aten::split",
                                                              "aten::split_with_sizes",
                                                              "aten::chunk",
                                                              "aten::unbind",
                                                              "aten::tensor_split",
                                                              "aten::contiguous",
                                                              "aten::to",
                                                              "aten::type_as",
                                                              "aten::real",
                                                              "aten::view_as_real",
                                                              "prim::ListUnpack",
                                                              "prim::TupleUnpack"};
  std::vector<ValueId> root(g.values().size());
  for (const Value& v : g.values()) root[v.id] = v.id;
  for (NodeId id : topological_order(g)) {
    const Node& n = g.node(id);
    // An in-place op (x.mul_(2)) returns its first argument itself.
    if (n.inputs.empty() || (kViews.count(n.op) == 0 && !is_in_place_op(n.op))) continue;
    for (ValueId out : n.outputs) root[out] = root[n.inputs[0]];
  }
  return root;
}

int min_samples_per_share(const Graph& g) {
  for (const Node& n : g.nodes()) {
    if (functional_op(n.op) != "aten::batch_norm" || n.inputs.size() <= 5) continue;
    if (constant_bool(g, n.inputs[5]) != true) continue;
    const TensorMeta* in = g.value(n.inputs[0]).meta();
    if (in == nullptr || in->shape.size() < 2) continue;
    int64_t per_sample_and_channel = 1;
    for (size_t d = 2; d < in->shape.size(); ++d) per_sample_and_channel *= in->shape[d];
    if (per_sample_and_channel == 1) return 2;
  }
  return 1;
}

std::vector<bool> inputs_written_in_place(const Graph& g) {
  const std::vector<ValueId> root = storage_roots(g);
  std::vector<bool> written(g.inputs().size(), false);
  for (const Node& n : g.nodes()) {
    if (!is_in_place_op(n.op) || n.inputs.empty()) continue;
    const auto at = std::find(g.inputs().begin(), g.inputs().end(), root[n.inputs[0]]);
    if (at != g.inputs().end()) written[static_cast<size_t>(at - g.inputs().begin())] = true;
  }
  return written;
}

std::vector<bool> batch_major(const Graph& g) {
  const std::vector<bool> dep = batch_dependent(g);
  std::vector<bool> major(g.values().size(), false);
  const int carrier = g.batch_input_index();
  const TensorMeta* input = carrier < 0 ? nullptr : g.value(g.inputs()[static_cast<size_t>(carrier)]).meta();
  if (input == nullptr || input->shape.empty()) return major;
  for (const Value& v : g.values()) {
    const TensorMeta* m = v.kind == ValueKind::kTensor ? v.meta() : nullptr;
    major[v.id] = dep[v.id] && m != nullptr && !m->shape.empty() && m->shape[0] == input->shape[0];
  }
  return major;
}

std::vector<bool> hybrid_crossable(const Graph& g) {
  const std::vector<bool> dep = batch_dependent(g), major = batch_major(g);
  std::vector<bool> ok(g.values().size(), false);
  for (const Value& v : g.values()) {
    const bool tensor_list =
        (v.kind == ValueKind::kList || v.kind == ValueKind::kTuple) && !v.tensors.empty();
    ok[v.id] = dep[v.id] ? major[v.id] : !tensor_list;
  }
  return ok;
}

namespace {

// [node] whether a cut after it carries only values with ok[value] (constants and graph inputs always cross).
std::vector<bool> cuts_carrying(const Graph& g, const std::vector<bool>& ok) {
  const int n = g.num_nodes();
  std::vector<bool> outputs(g.values().size(), false);
  for (ValueId v : g.outputs()) outputs[v] = true;
  std::vector<int> diff(static_cast<size_t>(n) + 1, 0);  // cuts after nodes [producer, last use) it crosses
  for (const Value& v : g.values()) {
    if (ok[v.id] || v.producer == kNoNode) continue;
    int last = outputs[v.id] ? n : static_cast<int>(v.producer);
    for (NodeId u : v.users) last = std::max(last, static_cast<int>(u));
    ++diff[v.producer];
    --diff[static_cast<size_t>(last)];
  }
  std::vector<bool> cuts(static_cast<size_t>(n), true);
  int crossing = 0;
  for (int i = 0; i + 1 < n; ++i)
    cuts[static_cast<size_t>(i)] = (crossing += diff[static_cast<size_t>(i)]) == 0;
  return cuts;
}

}  // namespace

std::vector<WrittenStorage> written_storages(const Graph& g) {
  const std::vector<ValueId> root = storage_roots(g);
  std::vector<int> index(g.values().size(), -1);
  std::vector<WrittenStorage> out;
  for (const Node& n : g.nodes()) {
    if (!is_in_place_op(n.op) || n.inputs.empty()) continue;
    const ValueId r = root[n.inputs[0]];
    const ValueRole role = g.value(r).role;
    if (role != ValueRole::kInput && role != ValueRole::kIntermediate) continue;
    if (index[r] < 0) {
      index[r] = static_cast<int>(out.size());
      out.push_back(WrittenStorage{r, {}, {}});
    }
    out[static_cast<size_t>(index[r])].writes.push_back(n.id);
  }
  for (const Value& v : g.values()) {
    const int i = index[root[v.id]];
    if (i >= 0) out[static_cast<size_t>(i)].members.push_back(v.id);
  }
  return out;
}

namespace {

// The cuts after nodes [from, to) separate where a member of `s` becomes available (made, or for a user-input
// root: before node 0) from its last reader (num_nodes for a graph output); from == to when none does.
struct Crossing {
  int from = 0, to = 0;
};
Crossing crossing(const Graph& g, const WrittenStorage& s, ValueId v, const std::vector<bool>& is_output) {
  const Value& value = g.value(v);
  int last = is_output[v] ? g.num_nodes() : -1;
  for (NodeId u : value.users) last = std::max(last, static_cast<int>(u));
  if (v == s.root && value.role == ValueRole::kInput) return Crossing{0, std::max(last, 0)};
  if (value.producer == kNoNode) return Crossing{};
  return Crossing{static_cast<int>(value.producer), std::max(last, static_cast<int>(value.producer))};
}

std::vector<bool> output_flags(const Graph& g) {
  std::vector<bool> is_output(g.values().size(), false);
  for (ValueId v : g.outputs()) is_output[v] = true;
  return is_output;
}

}  // namespace

std::vector<ValueId> copies_across_cut(const Graph& g, const WrittenStorage& s, NodeId cut) {
  const std::vector<bool> is_output = output_flags(g);
  std::vector<ValueId> copies;
  for (ValueId v : s.members) {
    const Crossing c = crossing(g, s, v, is_output);
    if (c.from <= cut && cut < c.to) copies.push_back(v);
  }
  return copies;
}

namespace {

// Calls f(member, reader) for every read of a member of `s` made before a write into `s` that precedes the
// reader (the reader must see that write).
template <typename F>
void for_each_read_after_a_write(const Graph& g, const WrittenStorage& s, F&& f) {
  for (ValueId v : s.members) {
    const NodeId made = g.value(v).producer;  // kNoNode (-1) for a user input: before every node
    const auto next_write = std::upper_bound(s.writes.begin(), s.writes.end(), made);
    if (next_write == s.writes.end()) continue;
    for (NodeId u : g.value(v).users) {
      if (u > *next_write) f(v, u);
    }
  }
}

}  // namespace

NodeId first_read_seeing_a_write(const Graph& g) {
  NodeId first = kNoNode;
  for (const WrittenStorage& s : written_storages(g)) {
    for_each_read_after_a_write(g, s, [&](ValueId, NodeId u) {
      if (first == kNoNode || u < first) first = u;
    });
  }
  return first;
}

std::vector<bool> storage_write_cuts(const Graph& g) {
  const std::vector<bool> is_output = output_flags(g);
  std::vector<bool> cuts(static_cast<size_t>(g.num_nodes()), true);
  for (const WrittenStorage& s : written_storages(g)) {
    // Only cuts before the last write matter; count the copies crossing each of them.
    const int last_write = s.writes.back();
    std::vector<int> diff(static_cast<size_t>(last_write) + 1, 0);
    for (ValueId v : s.members) {
      const Crossing c = crossing(g, s, v, is_output);
      const int to = std::min(c.to, last_write);
      if (c.from >= to) continue;
      ++diff[static_cast<size_t>(c.from)];
      --diff[static_cast<size_t>(to)];
    }
    int copies = 0;
    for (int cut = 0; cut < last_write; ++cut) {
      copies += diff[static_cast<size_t>(cut)];
      if (copies >= 2) cuts[static_cast<size_t>(cut)] = false;
    }
  }
  return cuts;
}

namespace {

std::vector<bool> both(std::vector<bool> a, const std::vector<bool>& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] = a[i] && b[i];
  return a;
}

}  // namespace

std::vector<bool> hybrid_cuts(const Graph& g) {
  return both(cuts_carrying(g, hybrid_crossable(g)), storage_write_cuts(g));
}

std::vector<bool> process_cuts(const Graph& g) {
  std::vector<bool> ok(g.values().size(), false);
  for (const Value& v : g.values())
    ok[v.id] = v.kind == ValueKind::kTensor || v.kind == ValueKind::kScalar || v.kind == ValueKind::kNone;
  return both(cuts_carrying(g, ok), storage_write_cuts(g));
}

std::vector<NodeParallelism> analyze_parallelism(const Graph& graph, ExecutionMode mode) {
  const std::vector<bool> dep = batch_dependent(graph);
  std::vector<NodeParallelism> out(graph.nodes().size());
  for (const auto& n : graph.nodes()) {
    NodeParallelism& p = out[n.id];
    p.node = n.id;
    const std::string_view op = functional_op(n.op);
    p.tensor_parallel = weight_split(graph, n, op);
    if (n.inputs.empty() || !dep[n.inputs[0]]) continue;
    if (op == "aten::batch_norm") {
      const bool flag = n.inputs.size() > 5 && constant_bool(graph, n.inputs[5]) == true;
      if (flag || mode == ExecutionMode::kTraining) {
        refuse(
            p,
            "batch_norm computes batch statistics in training: a slice of the batch normalizes differently");
      }
    } else if (const auto it = dim_ops().find(op); it != dim_ops().end()) {
      check_dim_op(graph, n, it->second, p);
    } else if (op == "aten::select" || op == "aten::slice") {
      check_slicing(graph, n, op, p);
    } else if (op == "aten::view" || op == "aten::reshape") {
      check_view(graph, n, p);
    }
  }
  for (const auto& n : graph.nodes()) mark_attention(graph, n, out);
  return out;
}

}  // namespace partita

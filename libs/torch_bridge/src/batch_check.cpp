#include "partita/torch_bridge/batch_check.h"

#include <algorithm>
#include <unordered_set>

#include "partita/core/error.h"
#include "partita/torch_bridge/executor.h"

namespace partita {

namespace {

// Shapes of the tensors a node produced, in output order, flattened over lists/tuples. Outputs that nothing
// reads are left out: what a split does to them cannot matter (an LSTM's final states, batch in dim 1, beside
// the per-step output a model uses).
class ShapeCollector : public ExecutionObserver {
 public:
  explicit ShapeCollector(const Graph& g) : graph_(g), shapes_(g.num_nodes()) {
    for (ValueId v : g.outputs()) graph_outputs_.insert(v);
  }
  void on_node_end(const Node& node, c10::ArrayRef<c10::IValue> outputs) override {
    auto& out = shapes_[node.id];
    for (size_t i = 0; i < outputs.size() && i < node.outputs.size(); ++i) {
      const ValueId v = node.outputs[i];
      if (graph_.value(v).users.empty() && graph_outputs_.count(v) == 0) continue;
      const c10::IValue& iv = outputs[i];
      if (iv.isTensor()) {
        out.push_back(iv.toTensor().sizes().vec());
      } else if (iv.isTensorList()) {
        for (const auto& t : iv.toTensorVector()) out.push_back(t.sizes().vec());
      }
    }
  }
  const Graph& graph_;
  std::unordered_set<ValueId> graph_outputs_;
  std::vector<std::vector<std::vector<int64_t>>> shapes_;
};

std::string shapes_text(const std::vector<std::vector<int64_t>>& shapes) {
  std::string s;
  for (const auto& shape : shapes) {
    s += s.empty() ? "[" : ", [";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    s += "]";
  }
  return s;
}

// Same shape except dim 0 scaled from b to b2.
bool follows(const std::vector<int64_t>& a, const std::vector<int64_t>& b, int64_t batch, int64_t batch2) {
  if (a.size() != b.size() || a.empty()) return false;
  if (a[0] * batch2 != b[0] * batch) return false;
  for (size_t i = 1; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// Every tensor of a graph output, tuples and lists flattened in order.
void flatten_tensors(const c10::IValue& v, std::vector<torch::Tensor>& out) {
  if (v.isTensor()) {
    out.push_back(v.toTensor());
  } else if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) flatten_tensors(e, out);
  } else if (v.isList()) {
    for (const auto& e : v.toListRef()) flatten_tensors(e, out);
  }
}

std::vector<torch::Tensor> output_tensors(const Executor& executor,
                                          const std::vector<torch::Tensor>& inputs) {
  const std::vector<c10::IValue> in(inputs.begin(), inputs.end());
  std::vector<torch::Tensor> out;
  for (const auto& v : executor.run(in)) flatten_tensors(v, out);
  return out;
}

// Nodes drawing random numbers other than dropout (which the halves run as in eval mode). The halves run
// the floating-point draws at their expected value (ExecutorOptions::as_in_eval_without_draws); integer draws
// (indices, permutations) stay random, and their draws for two halves cannot equal those for the whole batch.
bool draws_integers(std::string_view op) {
  return op == "aten::randint" || op == "aten::randint_like" || op == "aten::randperm" ||
         op == "aten::multinomial";
}
std::vector<NodeId> random_nodes(const Graph& g) {
  static const std::vector<std::string_view> kRandom = {
      "aten::bernoulli",      "aten::bernoulli_",  "aten::rand",         "aten::rand_like", "aten::randn",
      "aten::randn_like",     "aten::randint",     "aten::randint_like", "aten::randperm",  "aten::normal",
      "aten::normal_",        "aten::uniform_",    "aten::multinomial",  "aten::rrelu",     "aten::rrelu_",
      "aten::native_dropout", "aten::exponential_"};
  std::vector<NodeId> out;
  for (const Node& n : g.nodes()) {
    if (std::find(kRandom.begin(), kRandom.end(), n.op) != kRandom.end()) out.push_back(n.id);
  }
  return out;
}

// Runs the batch of `specs` whole and as two halves and compares the halves' outputs, joined along dim 0,
// with the whole batch's (up to float reassociation; shared inputs whole in each half); `detail` says how
// they differ.
HalvesVerdict compare_halves(const Executor& executor, const std::vector<InputSpec>& specs,
                             std::string& detail) {
  const auto whole_specs = spec_batch(specs) >= 2 ? specs : with_batch(specs, 2);
  const int64_t batch = spec_batch(whole_specs), half = batch / 2;
  const std::vector<torch::Tensor> inputs = make_inputs(whole_specs, /*seed=*/3);
  std::vector<torch::Tensor> first, second;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const torch::Tensor& t = inputs[i];
    first.push_back(whole_specs[i].shared ? t : t.narrow(0, 0, half));
    second.push_back(whole_specs[i].shared ? t : t.narrow(0, half, batch - half));
  }
  std::vector<torch::Tensor> whole, a, b;
  try {
    whole = output_tensors(executor, inputs);
    a = output_tensors(executor, first);
    b = output_tensors(executor, second);
  } catch (const std::exception& e) {
    detail = "running half a batch failed: " + first_line(e);
    return HalvesVerdict::kFailed;
  }
  if (whole.empty()) {
    detail = "the model has no tensor output";
    return HalvesVerdict::kOutputOutsideDim0;
  }
  for (size_t i = 0; i < whole.size(); ++i) {
    const std::string which = "output " + std::to_string(i);
    // Dim 0 holds the batch, or whole samples' rows (a [batch * time, vocab] view of a language model's
    // logits): joined halves cover it either way.
    if (whole[i].dim() == 0 || whole[i].size(0) == 0 || whole[i].size(0) % batch != 0 ||
        a.size() != whole.size() || b.size() != whole.size() || a[i].dim() == 0 || b[i].dim() == 0 ||
        !torch::cat({a[i], b[i]}, 0).sizes().equals(whole[i].sizes())) {
      detail = which + " does not carry the batch in dim 0 (" + shapes_text({whole[i].sizes().vec()}) +
               " at batch " + std::to_string(batch) + ")";
      return HalvesVerdict::kOutputOutsideDim0;
    }
    const torch::Tensor joined = torch::cat({a[i], b[i]}, 0);
    const bool same = whole[i].is_floating_point() ? torch::allclose(joined, whole[i], 1e-4, 1e-5)
                                                   : torch::equal(joined, whole[i]);
    if (!same) {
      detail = which + " of two halves of a batch of " + std::to_string(batch) +
               " differs from the whole batch's (the model mixes samples";
      const Graph& g = executor.model().ir;
      for (NodeId r : random_nodes(g)) {
        if (!draws_integers(g.node(r).op)) continue;
        detail += ", or " + describe_node(g.node(r)) + " draws other random numbers for each half";
        break;
      }
      detail += ")";
      return HalvesVerdict::kMixSamples;
    }
  }
  return HalvesVerdict::kAgree;
}

}  // namespace

std::string_view batch_behavior_name(BatchBehavior b) {
  switch (b) {
    case BatchBehavior::kFollowsBatch:
      return "follows batch";
    case BatchBehavior::kBatchFree:
      return "batch-free";
    case BatchBehavior::kReducesBatch:
      return "reduces over the batch";
    case BatchBehavior::kMovesBatch:
      return "moves the batch out of dim 0";
    case BatchBehavior::kFails:
      return "fails at another batch size";
  }
  return "?";
}

bool BatchCheckResult::splittable() const {
  for (const auto& p : problems) {
    if (p.behavior == BatchBehavior::kFails) return false;
  }
  return halves_agree();
}

BatchCheckResult check_batch_splittability(const LoadedModel& model, const std::vector<InputSpec>& specs) {
  PARTITA_CHECK(!specs.empty() && !specs[batch_input_index(specs)].shape.empty(),
                "batch check needs an input with a batch dimension");
  const Graph& g = model.ir;
  BatchCheckResult result;
  result.batch = spec_batch(specs);
  result.second_batch = result.batch == 1 ? 2 : result.batch + 1;
  const auto specs2 = with_batch(specs, result.second_batch);

  const Executor executor(model);
  torch::NoGradGuard no_grad;
  auto run = [&](const std::vector<InputSpec>& s, ShapeCollector& collector) -> std::optional<std::string> {
    std::vector<c10::IValue> inputs;
    for (const auto& t : make_inputs(s)) inputs.emplace_back(t);
    try {
      executor.run(inputs, &collector);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::nullopt;
  };
  ShapeCollector first(g), second(g);
  const auto first_error = run(specs, first);
  PARTITA_CHECK(!first_error, "model fails at its own batch size: ", *first_error);
  const auto second_error = run(specs2, second);

  // A value depends on the batch when its shape changed, or when it is computed from something that did.
  std::vector<bool> batch_dependent(g.num_values(), false);
  for (size_t i = 0; i < g.inputs().size(); ++i) batch_dependent[g.inputs()[i]] = !specs.at(i).shared;
  for (const Node& n : g.nodes()) {
    const auto& a = first.shapes_[n.id];
    const auto& b = second.shapes_[n.id];
    // Only tensors carry samples; scalars from aten::size carry shape math (a sequence length), not the
    // batch.
    bool input_dep = false;
    for (ValueId v : n.inputs) input_dep = input_dep || batch_dependent[v];
    if (b.empty() && second_error && !a.empty()) {  // did not run: the failing node or one after it
      if (result.problems.empty() || result.problems.back().behavior != BatchBehavior::kFails) {
        result.problems.push_back({n.id, BatchBehavior::kFails, *second_error});
      }
      break;
    }
    bool all_follow = !a.empty(), any_changed = false;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      all_follow = all_follow && follows(a[i], b[i], result.batch, result.second_batch);
      any_changed = any_changed || a[i] != b[i];
    }
    for (ValueId v : n.outputs) batch_dependent[v] = input_dep && g.value(v).kind != ValueKind::kScalar;
    if (!input_dep || a.empty()) continue;  // scalars (aten::size) carry shape math, not samples
    if (!any_changed) {
      result.problems.push_back({n.id, BatchBehavior::kReducesBatch, shapes_text(a)});
    } else if (!all_follow) {
      result.problems.push_back({n.id, BatchBehavior::kMovesBatch,
                                 shapes_text(a) + " at batch " + std::to_string(result.batch) + " vs " +
                                     shapes_text(b) + " at " + std::to_string(result.second_batch)});
    }
  }
  // Even when every node's output follows the batch, a node may work along it (flip, roll, cumsum or sort in
  // dim 0, a batch concatenated with itself): only the halves can show that, so they always run. Dropout and
  // batch norm run as in eval mode there, and other random draws at their expected value: a replica or
  // microbatch draws its own dropout masks and noise and normalizes by its own share's statistics, as under
  // DDP, and that is accepted (analyze reports batch norm's statistics in training and the random draws).
  result.random_draws = random_nodes(g);
  if (!second_error) {
    ExecutorOptions as_in_eval;
    as_in_eval.as_in_eval_without_draws = true;
    result.halves = compare_halves(Executor(model, as_in_eval), specs, result.halves_detail);
  }
  return result;
}

}  // namespace partita

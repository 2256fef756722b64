#include "partita/torch_bridge/executor.h"

#include <algorithm>

#include "partita/core/error.h"
#include "partita/graph/analysis.h"

namespace partita {

std::string describe_node(const Node& node) {
  std::string s = "node " + std::to_string(node.id) + " " + node.op;
  std::string where = node.scope;
  if (!node.source.empty()) where += (where.empty() ? "" : ", ") + node.source;
  if (!where.empty()) s += " (" + where + ")";
  return s;
}

namespace {

// The interpreter implements list/tuple construction itself (they have no operator schema, and LibTorch does
// not export its helpers); so do we.
torch::jit::Operation make_operation(const torch::jit::Node* n) {
  using torch::jit::Stack;
  const size_t num_inputs = n->inputs().size();
  const size_t num_outputs = n->outputs().size();
  if (n->kind() == c10::prim::ListConstruct) {
    const c10::TypePtr element = n->output()->type()->expectRef<c10::ListType>().getElementType();
    return [element, num_inputs](Stack& stack) {
      c10::impl::GenericList list(element);
      list.reserve(num_inputs);
      for (size_t i = stack.size() - num_inputs; i < stack.size(); ++i) list.push_back(std::move(stack[i]));
      stack.resize(stack.size() - num_inputs);
      stack.emplace_back(std::move(list));
    };
  }
  if (n->kind() == c10::prim::ListUnpack) {
    return [num_outputs](Stack& stack) {
      const c10::List<c10::IValue> list = stack.back().toList();
      stack.pop_back();
      PARTITA_CHECK(list.size() == num_outputs, "list of ", list.size(), " elements unpacked into ",
                    num_outputs);
      for (size_t i = 0; i < num_outputs; ++i) stack.push_back(list.get(i));
    };
  }
  if (n->kind() == c10::prim::TupleConstruct) {
    return [num_inputs](Stack& stack) {
      std::vector<c10::IValue> elements(std::make_move_iterator(stack.end() - static_cast<long>(num_inputs)),
                                        std::make_move_iterator(stack.end()));
      stack.resize(stack.size() - num_inputs);
      stack.emplace_back(c10::ivalue::Tuple::create(std::move(elements)));
    };
  }
  if (n->kind() == c10::prim::TupleUnpack) {
    return [](Stack& stack) {
      const auto tuple = stack.back().toTuple();
      stack.pop_back();
      for (const auto& e : tuple->elements()) stack.push_back(e);
    };
  }
  return n->getOperation();
}

// `op` run as in eval mode: dropout (input, p, train) as the identity; batch_norm (input, weight, bias,
// running_mean, running_var, training, momentum, eps, cudnn_enabled) with training off when it keeps running
// statistics (without them eval mode would fail, and the batch's own statistics are all it has).
torch::jit::Operation as_in_eval(const Node& node, torch::jit::Operation op) {
  using torch::jit::Stack;
  static const std::vector<std::string> kDropouts = {"aten::dropout",
                                                     "aten::dropout_",
                                                     "aten::feature_dropout",
                                                     "aten::feature_dropout_",
                                                     "aten::alpha_dropout",
                                                     "aten::alpha_dropout_",
                                                     "aten::feature_alpha_dropout",
                                                     "aten::feature_alpha_dropout_"};
  if (std::find(kDropouts.begin(), kDropouts.end(), node.op) != kDropouts.end() && node.inputs.size() == 3) {
    return [](Stack& stack) { stack.resize(stack.size() - 2); };  // leaves the input as the output
  }
  if (node.op == "aten::batch_norm" && node.inputs.size() == 9) {
    return [op = std::move(op)](Stack& stack) mutable {  // torch 1.13: operator() is non-const
      const size_t first = stack.size() - 9;
      if (!stack[first + 3].isNone() && !stack[first + 4].isNone()) stack[first + 5] = false;
      op(stack);
    };
  }
  return op;
}

}  // namespace

Executor::Executor(const LoadedModel& model, ExecutorOptions options)
    : model_(model), options_(std::move(options)) {
  const Graph& g = model.ir;
  // Last use of each value, so intermediate tensors are released as soon as possible.
  std::vector<NodeId> last_use(g.num_values(), kNoNode);
  for (const Node& n : g.nodes()) {
    for (ValueId v : n.inputs) last_use[v] = std::max(last_use[v], n.id);
  }
  std::vector<bool> keep(g.num_values(), false);
  for (ValueId v : g.outputs()) keep[v] = true;
  for (const Value& v : g.values()) {
    if (v.role != ValueRole::kIntermediate) keep[v.id] = true;
  }
  written_inputs_ = inputs_written_in_place(g);
  steps_.reserve(g.num_nodes());
  for (const Node& n : g.nodes()) {
    Step step;
    try {
      step.op = make_operation(model.torch_nodes[n.id]);
      if (options_.dropout_and_batch_norm_as_in_eval) step.op = as_in_eval(n, std::move(step.op));
    } catch (const std::exception& e) {
      PARTITA_FAIL(describe_node(n), " has no operator LibTorch runs outside its interpreter (",
                   first_line(e), "); partita cannot run this model");
    }
    step.inputs = n.inputs;
    step.outputs = n.outputs;
    for (ValueId v : n.inputs) {
      if (!keep[v] && last_use[v] == n.id &&
          std::find(step.release_after.begin(), step.release_after.end(), v) == step.release_after.end()) {
        step.release_after.push_back(v);
      }
    }
    // Outputs nobody uses are released at once (e.g. the second output of max_pool2d_with_indices).
    for (ValueId v : n.outputs) {
      if (!keep[v] && last_use[v] == kNoNode) step.release_after.push_back(v);
    }
    steps_.push_back(std::move(step));
  }
  const bool on_cpu = options_.device.is_cpu();
  if (!options_.parameters.empty()) {
    PARTITA_CHECK(options_.parameters.size() == model.parameters.size(), "the executor was given ",
                  options_.parameters.size(), " parameter tensors for a model with ",
                  model.parameters.size());
    parameters_ = std::move(options_.parameters);
    options_.parameters.clear();
  } else {
    for (const auto& p : model.parameters) {
      parameters_.push_back(on_cpu ? p : p.detach().to(options_.device).requires_grad_(p.requires_grad()));
    }
  }
  for (const auto& c : model.constants) {
    constants_.push_back(c.ivalue.isTensor() && !on_cpu ? c10::IValue(c.ivalue.toTensor().to(options_.device))
                                                        : c.ivalue);
  }
}

Executor::Environment Executor::make_environment(const std::vector<c10::IValue>& inputs) const {
  const Graph& g = model_.ir;
  PARTITA_CHECK(inputs.size() == g.inputs().size(), "the model takes ", g.inputs().size(), " input(s) but ",
                inputs.size(), " were given; pass one --input per forward() argument");
  Environment env(g.num_values());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const bool copy = written_inputs_[i] && inputs[i].isTensor();
    env[g.inputs()[i]] = copy ? c10::IValue(inputs[i].toTensor().clone()) : inputs[i];
  }
  for (size_t i = 0; i < parameters_.size(); ++i) env[g.parameters()[i].value] = parameters_[i];
  for (size_t i = 0; i < constants_.size(); ++i) env[model_.constants[i].value] = constants_[i];
  return env;
}

void Executor::run_nodes(NodeId first, NodeId last, Environment& env, ExecutionObserver* observer) const {
  PARTITA_ASSERT(first >= 0 && last < static_cast<NodeId>(steps_.size()) && first <= last + 1, "range ",
                 first, "..", last);
  torch::jit::Stack stack;
  const auto& nodes = model_.ir.nodes();
  for (NodeId id = first; id <= last; ++id) {
    const Step& step = steps_[id];
    stack.clear();
    for (ValueId v : step.inputs) stack.push_back(env[v]);
    if (observer) observer->on_node_begin(nodes[id]);
    try {
      step.op(stack);
    } catch (const std::exception& e) {
      PARTITA_FAIL(describe_node(nodes[id]), " failed: ", first_line(e));
    }
    PARTITA_ASSERT(stack.size() == step.outputs.size(), describe_node(nodes[id]), " returned ", stack.size(),
                   " values, expected ", step.outputs.size());
    if (observer) observer->on_node_end(nodes[id], stack);
    for (size_t i = 0; i < step.outputs.size(); ++i) env[step.outputs[i]] = std::move(stack[i]);
    for (ValueId v : step.release_after) env[v] = c10::IValue();
  }
}

std::vector<c10::IValue> Executor::run_node(NodeId node, std::vector<c10::IValue> inputs) const {
  PARTITA_ASSERT(node >= 0 && node < static_cast<NodeId>(steps_.size()), "node ", node);
  const Step& step = steps_[node];
  PARTITA_ASSERT(inputs.size() == step.inputs.size(), "node ", node, " takes ", step.inputs.size(),
                 " inputs");
  try {
    step.op(inputs);
  } catch (const std::exception& e) {
    PARTITA_FAIL(describe_node(model_.ir.node(node)), " failed: ", first_line(e));
  }
  return inputs;
}

std::vector<c10::IValue> Executor::run(const std::vector<c10::IValue>& inputs,
                                       ExecutionObserver* observer) const {
  Environment env = make_environment(inputs);
  if (!steps_.empty()) run_nodes(0, static_cast<NodeId>(steps_.size()) - 1, env, observer);
  std::vector<c10::IValue> outputs;
  for (ValueId v : model_.ir.outputs()) outputs.push_back(env[v]);
  return outputs;
}

}  // namespace partita

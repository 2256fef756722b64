// Conditions of a scripted forward() decided by the run, folded from one probed run of the graph.
#include "partita/torch_bridge/run_conditions.h"

#include <string>
#include <unordered_map>
#include <unordered_set>

#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/loop_unrolling.h>
#include <torch/csrc/jit/runtime/custom_operator.h>
#include <torch/csrc/jit/runtime/interpreter.h>

#include "jit_nodes.h"

namespace partita {

namespace jit = torch::jit;

namespace {

// Reads of a tensor's metadata that a run keeps fixed (not its sizes, which change with the batch).
bool reads_fixed_metadata(const jit::Node* n) {
  static const std::unordered_set<std::string> kinds{"aten::dim",
                                                     "prim::device",
                                                     "prim::dtype",
                                                     "prim::layout",
                                                     "prim::requires_grad",
                                                     "prim::is_cuda",
                                                     "prim::is_nested",
                                                     "prim::is_sparse",
                                                     "prim::is_sparse_csr",
                                                     "prim::is_mkldnn",
                                                     "prim::is_quantized",
                                                     "prim::is_meta",
                                                     "prim::is_xpu",
                                                     "prim::is_mps",
                                                     "prim::is_vulkan",
                                                     "prim::is_ipu",
                                                     "aten::is_floating_point",
                                                     "aten::is_complex"};
  return kinds.count(n->kind().toQualString()) > 0;
}

// The run's own state, fixed for a run: grad mode as the probe sets it, autocast never on in partita.
bool reads_run_state(const jit::Node* n) {
  static const std::unordered_set<std::string> kinds{"aten::is_grad_enabled", "aten::is_autocast_enabled",
                                                     "aten::is_autocast_cpu_enabled"};
  return kinds.count(n->kind().toQualString()) > 0;
}

bool holds_tensors(const c10::TypePtr& type) {
  if (type->kind() == c10::TypeKind::TensorType) return true;
  for (const c10::TypePtr& inner : type->containedTypes()) {
    if (holds_tensors(inner)) return true;
  }
  return false;
}

// Whether a value is fixed for the run in the sense of run_conditions.h. Memoized; the graph is loop-free
// where it answers yes (a value a loop carries is not fixed: it is refused).
class FixedValues {
 public:
  bool fixed(const jit::Value* v) {
    const auto known = memo_.find(v);
    if (known != memo_.end()) return known->second;
    memo_[v] = false;  // what is being decided is not fixed to itself (no cycles in SSA, but be safe)
    const bool answer = decide(v);
    memo_[v] = answer;
    return answer;
  }

 private:
  bool decide(const jit::Value* v) {
    if (holds_tensors(v->type())) return false;
    const jit::Node* n = v->node();
    switch (n->kind()) {
      case c10::prim::Constant:
      case c10::prim::Uninitialized:  // the side of a branch that raises: never read
        return true;
      case c10::prim::Param:  // a graph input or a value a loop carries
      case c10::prim::Loop:
        return false;
      case c10::prim::If: {
        if (!fixed(n->input(0))) return false;
        for (const jit::Block* b : n->blocks()) {
          if (!fixed(b->outputs().at(v->offset()))) return false;
        }
        return true;
      }
      default:
        break;
    }
    if (reads_fixed_metadata(n) || reads_run_state(n)) return true;
    if (n->kind() == c10::aten::__is__ || n->kind() == c10::aten::__isnot__) return identity_fixed(n);
    if (n->hasSideEffects() || !n->blocks().empty()) return false;
    if (n->inputs().empty() && n->kind() != c10::prim::ListConstruct) return false;  // an unknown source
    for (const jit::Value* input : n->inputs()) {
      if (!fixed(input)) return false;
    }
    if (v->type()->kind() == c10::TypeKind::ListType && !appended_only_fixed(v)) return false;
    return true;
  }

  // `a is b`, `a is not b`: fixed when a and b are one value (`self_attn(x, x, x)` tests `query is key`), or
  // when one is None and whether the other is None is fixed (an optional mask that no branch sets).
  bool identity_fixed(const jit::Node* n) {
    const jit::Value* a = n->input(0);
    const jit::Value* b = n->input(1);
    if (a == b) return true;
    if (a->type()->kind() == c10::TypeKind::NoneType) return null_fixed(b);
    if (b->type()->kind() == c10::TypeKind::NoneType) return null_fixed(a);
    return false;
  }

  // Whether a value is None is fixed: it cannot be None, it is a constant, or it comes out of a branch on a
  // fixed condition whose sides each give a value whose being None is fixed.
  bool null_fixed(const jit::Value* v) {
    if (v->type()->kind() != c10::TypeKind::OptionalType) return true;
    const jit::Node* n = v->node();
    if (n->kind() == c10::prim::Constant) return true;
    if (n->kind() != c10::prim::If || !fixed(n->input(0))) return false;
    for (const jit::Block* b : n->blocks()) {
      if (!null_fixed(b->outputs().at(v->offset()))) return false;
    }
    return true;
  }

  // A list is mutable: it stays fixed when every use only reads it or appends a fixed value in the block that
  // made it (an append in a branch depends on the branch's condition too)
  // (`all(x.device.type in supported for x in tensor_args)` builds one).
  bool appended_only_fixed(const jit::Value* list) {
    for (const jit::Use& use : list->uses()) {
      const jit::Node* user = use.user;
      if (user->kind() == c10::aten::append) {
        if (use.offset != 0 || user->owningBlock() != list->node()->owningBlock() || !fixed(user->input(1)) ||
            user->output()->hasUses()) {
          return false;
        }
        continue;
      }
      if (user->kind() == c10::prim::Return || !user->blocks().empty()) return false;
      const c10::FunctionSchema* schema = user->maybeSchema();
      if (schema == nullptr || schema->is_mutable()) return false;
    }
    return true;
  }

  std::unordered_map<const jit::Value*, bool> memo_;
};

// What the probe saw of one condition or loop count.
struct Seen {
  int times = 0;
  int64_t value = 0;  // a condition's 0 or 1, or a count
  bool varied = false;
};

thread_local std::vector<Seen>* active_probes = nullptr;

const c10::Symbol& probe_symbol() {
  static const c10::Symbol symbol = c10::Symbol::fromQualString("partita::probe");
  return symbol;
}
const c10::Symbol& count_probe_symbol() {
  static const c10::Symbol symbol = c10::Symbol::fromQualString("partita::probe_count");
  return symbol;
}

// Probe `id` saw `value`.
void see(int64_t id, int64_t value) {
  if (active_probes == nullptr) return;
  Seen& seen = active_probes->at(static_cast<size_t>(id));
  seen.varied |= seen.times > 0 && seen.value != value;
  seen.value = value;
  ++seen.times;
}

void register_probe() {
  static const jit::RegisterOperators once({jit::Operator(
                                                "partita::probe(bool condition, int id) -> bool",
                                                [](jit::Stack& stack) {
                                                  const int64_t id = jit::pop(stack).toInt();
                                                  see(id, stack.back().toBool() ? 1 : 0);
                                                },
                                                c10::AliasAnalysisKind::CONSERVATIVE),
                                            jit::Operator(
                                                "partita::probe_count(int count, int id) -> int",
                                                [](jit::Stack& stack) {
                                                  const int64_t id = jit::pop(stack).toInt();
                                                  see(id, stack.back().toInt());
                                                },
                                                c10::AliasAnalysisKind::CONSERVATIVE)});
}

// One round: probes every fixed condition and loop count, runs the graph once, folds what the run decided.
RunConditionFolds fold_once(const std::shared_ptr<jit::Graph>& graph, std::vector<c10::IValue> stack,
                            ModuleMode mode) {
  // Which to probe is decided on the graph as it is, before any probe goes in: a branch's condition (input 0
  // of prim::If) and a loop's count (input 0 of prim::Loop, `range(x.dim() - 2)`).
  FixedValues values;
  std::vector<jit::Node*> decided;
  for (jit::Node* n : detail::nodes_within(graph->block())) {
    if ((n->kind() == c10::prim::If || n->kind() == c10::prim::Loop) &&
        n->input(0)->node()->kind() != c10::prim::Constant && values.fixed(n->input(0)))
      decided.push_back(n);
  }
  std::vector<jit::Node*> probes;
  for (jit::Node* n : decided) {
    const jit::WithInsertPoint before(n);
    const c10::Symbol& kind = n->kind() == c10::prim::If ? probe_symbol() : count_probe_symbol();
    jit::Value* probed = graph->insert(kind, {n->input(0), static_cast<int64_t>(probes.size())});
    n->replaceInput(0, probed);
    probes.push_back(probed->node());
  }
  RunConditionFolds result;
  if (probes.empty()) return result;

  std::vector<Seen> seen(probes.size());
  const auto remove_probes = [&](bool fold) {
    for (size_t i = 0; i < probes.size(); ++i) {
      jit::Node* probe = probes[i];
      jit::Value* replacement = probe->input(0);
      if (fold && seen[i].times > 0 && !seen[i].varied) {
        const jit::WithInsertPoint before(probe);
        if (probe->kind() == probe_symbol()) {
          replacement = graph->insertConstant(seen[i].value != 0);
          ++result.folded;
        } else {
          replacement = graph->insertConstant(seen[i].value);
          ++result.loop_counts;
        }
      }
      probe->output()->replaceAllUsesWith(replacement);
      probe->destroy();
    }
  };
  try {
    const jit::Code code(graph, "partita_probe");
    jit::InterpreterState run(code);
    const torch::AutoGradMode grad(mode == ModuleMode::kTrain);
    active_probes = &seen;
    run.run(stack);
    active_probes = nullptr;
  } catch (...) {
    active_probes = nullptr;
    remove_probes(false);
    throw;
  }
  remove_probes(true);
  result.runs = 1;
  return result;
}

}  // namespace

RunConditionFolds fold_run_conditions(const std::shared_ptr<jit::Graph>& graph,
                                      const std::vector<c10::IValue>& stack, ModuleMode mode) {
  register_probe();
  // A fold can make another condition fixed (`query is key` once the branch that made them different copies
  // is gone), so rounds go on while one folds: each removes at least one branch.
  // A loop whose count was fixed is unrolled: its bodies may hold conditions to fold in the next round.
  RunConditionFolds result;
  while (true) {
    const RunConditionFolds round = fold_once(graph, stack, mode);
    result.runs += round.runs;
    if (round.folded + round.loop_counts == 0) break;
    result.folded += round.folded;
    result.loop_counts += round.loop_counts;
    std::shared_ptr<jit::Graph> g = graph;  // (the passes take a non-const reference)
    jit::ConstantPropagation(g);
    if (jit::UnrollConstantLoops(g)) jit::ConstantPropagation(g);
  }
  // Reads of the run's state that no condition needs any more: dead code elimination keeps them (they are
  // not pure functions to TorchScript).
  for (jit::Node* n : detail::nodes_within(graph->block())) {
    if (reads_run_state(n) && !n->hasUses()) n->destroy();  // (such a read has no blocks)
  }
  return result;
}

}  // namespace partita

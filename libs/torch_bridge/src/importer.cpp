// TorchScript file -> lowered torch graph + partita IR.
#include <algorithm>
#include <filesystem>
#include <limits>
#include <sstream>
#include <unordered_map>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/loop_unrolling.h>
#include <torch/csrc/jit/passes/lower_graph.h>
#include <torch/csrc/jit/passes/remove_exceptions.h>
#include <torch/version.h>

#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/core/log.h"
#include "partita/graph/analysis.h"
#include "partita/graph/op_names.h"
#include "partita/hardware/cpu_info.h"
#include "partita/torch_bridge/executor.h"
#include "partita/torch_bridge/model.h"
#include "partita/torch_bridge/run_conditions.h"

#include "jit_nodes.h"

namespace partita {

namespace jit = torch::jit;

std::string first_line(const std::exception& e) {
  // The first line with text: some LibTorch errors start with a newline.
  std::istringstream lines(e.what());
  for (std::string line; std::getline(lines, line);) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) return line;
  }
  return "(no message)";
}

std::string last_line(const std::exception& e) {
  std::istringstream lines(e.what());
  std::string last = "(no message)";
  for (std::string line; std::getline(lines, line);) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  }
  return last;
}

namespace {

ValueKind kind_of(const c10::TypePtr& type) {
  switch (type->kind()) {
    case c10::TypeKind::TensorType:
      return ValueKind::kTensor;
    case c10::TypeKind::IntType:
    case c10::TypeKind::FloatType:
    case c10::TypeKind::BoolType:
    case c10::TypeKind::NumberType:
      return ValueKind::kScalar;
    case c10::TypeKind::ListType:
      return ValueKind::kList;
    case c10::TypeKind::TupleType:
      return ValueKind::kTuple;
    case c10::TypeKind::NoneType:
      return ValueKind::kNone;
    default:
      return ValueKind::kOther;
  }
}

// The line of the model's own Python source a node comes from, where the file kept it; else its line in the
// TorchScript code the file holds.
std::string source_of(const jit::Node* n) {
  const c10::optional<jit::SourceRange> original = n->sourceRange().findSourceRangeThatGenerated();
  const auto flc = (original ? *original : n->sourceRange()).file_line_col();
  if (!flc) return "";
  const auto& [file, line, col] = *flc;
  return std::filesystem::path(file).filename().string() + ":" + std::to_string(line);
}

// Module path of an inlined node ("layer1.0.conv1"), from the module instances on its inlined call stack.
std::string scope_of(const jit::Node* n) {
  const auto callstack = n->callstack();
  if (!callstack) return "";
  std::string path;
  for (const auto& entry : (*callstack)->vec()) {
    const auto& info = std::get<2>(entry);
    if (!info || info->instance_name().empty()) continue;
    path += (path.empty() ? "" : ".") + info->instance_name();
  }
  return path;
}

// A model that returns a dict (torchvision's segmentation models; a Hugging Face model traced with
// strict=False) is imported as returning the tuple of the dict's values, in its (insertion) order: partita
// moves, splits and compares the values, and training's loss reads the first. Returns the keys, in that
// order; empty when forward() returns no dict. A dict built anywhere else is left for
// reject_unsupported_nodes.
std::vector<std::string> return_dict_values_as_tuple(jit::Graph& g) {
  std::vector<std::string> keys;
  for (size_t i = 0; i < g.outputs().size(); ++i) {
    jit::Node* dict = g.outputs()[i]->node();
    if (dict->kind() != c10::prim::DictConstruct || dict->output()->uses().size() != 1) continue;
    std::vector<std::string> these;
    std::vector<jit::Value*> values;
    for (size_t k = 0; k + 1 < dict->inputs().size(); k += 2) {
      const auto key = jit::toIValue(dict->input(k));
      if (!key) break;  // a key computed in forward(): not a returned record
      std::ostringstream name;
      if (key->isString()) {
        name << key->toStringRef();
      } else {
        name << *key;
      }
      these.push_back(name.str());
      values.push_back(dict->input(k + 1));
    }
    if (values.size() * 2 != dict->inputs().size()) continue;
    jit::Node* tuple = g.createTuple(values);
    tuple->insertAfter(dict);
    tuple->setSourceRange(dict->sourceRange());
    g.return_node()->replaceInput(i, tuple->output());
    dict->destroy();
    keys.insert(keys.end(), these.begin(), these.end());
  }
  return keys;
}

// A number in a traced forward (`0.5 * mask.long()`, `t / 8`) is recorded as a 0-d tensor constant (float64
// or int64). TorchScript's graph executor, before it runs a graph, turns such a constant in the `other`
// operand of add, sub, mul and div into a number, so the op runs as its Scalar overload and promotes as
// Python's number did: `0.5 * int64_tensor` is float32, not the float64 that a 0-d float64 tensor operand
// gives. partita's executor runs the graph itself, so the importer makes the same change; otherwise outputs
// change dtype.
void tensor_constant_operands_as_numbers(jit::Graph& g) {
  const auto binary_tensor_op = [](const jit::Node* n) {
    return n->matches("aten::add(Tensor self, Tensor other, *, Scalar alpha) -> Tensor") ||
           n->matches("aten::sub(Tensor self, Tensor other, *, Scalar alpha) -> Tensor") ||
           n->matches("aten::mul(Tensor self, Tensor other) -> Tensor") ||
           n->matches("aten::div(Tensor self, Tensor other) -> Tensor");
  };
  std::vector<jit::Node*> to_replace;
  for (jit::Node* n : g.nodes()) {
    if (!binary_tensor_op(n)) continue;
    const auto other = jit::toIValue(n->input(1));
    if (other && other->isTensor() && other->toTensor().dim() == 0) to_replace.push_back(n);
  }
  for (jit::Node* n : to_replace) {
    const jit::WithInsertPoint before(n);
    std::vector<jit::Value*> operands = n->inputs().vec();
    operands[1] = g.insertConstant(jit::toIValue(n->input(1))->toTensor().item());
    jit::Node* scalar_op = g.insertNode(g.create(n->kind(), operands));
    scalar_op->copyMetadata(n);
    scalar_op->output()->copyMetadata(n->output());
    n->output()->replaceAllUsesWith(scalar_op->output());
    n->destroy();
  }
}

// Every node of the graph, nested blocks included, in no particular order.
std::vector<jit::Node*> all_nodes(jit::Graph& g) { return detail::nodes_within(g.block()); }

// A scripted forward() may call warnings.warn (torchvision's scripted GoogLeNet does, on every call), which
// TorchScript's interpreter prints and which has no operator partita's executor could run. Each message is
// logged once here and the node dropped: it computes nothing.
void log_and_drop_warnings(jit::Graph& g, const std::string& path) {
  for (jit::Node* n : all_nodes(g)) {
    if (n->kind() != c10::aten::warn) continue;
    const c10::optional<c10::IValue> message =
        n->inputs().empty() ? c10::nullopt : jit::toIValue(n->input(0));
    log_info("'" + path + "' warns in forward(): " +
             (message && message->isString() ? message->toStringRef() : std::string("(a computed message)")));
    n->destroy();
  }
}

// The module object a value of the inlined forward() stands for: `self` (the graph's first input) or a chain
// of prim::GetAttr from it; nullopt for anything else.
std::optional<c10::IValue> module_value(const jit::Value* v, const jit::Graph& g, const c10::IValue& self) {
  if (v == g.inputs().at(0)) return self;
  const jit::Node* n = v->node();
  if (n->kind() != c10::prim::GetAttr) return std::nullopt;
  const std::optional<c10::IValue> owner = module_value(n->input(), g, self);
  if (!owner || !owner->isObject()) return std::nullopt;
  return owner->toObjectRef().getAttr(n->s(c10::attr::name));
}

// A loop whose results nothing reads and whose body computes only numbers (what is left of batch norm's
// `_verify_batch_size` once its raise is gone: a product of sizes) does nothing; TorchScript's dead code
// elimination keeps loops, so they go here. Returns how many.
int drop_unread_number_loops(jit::Graph& g) {
  const auto computes_numbers = [](const jit::Node* n) {
    if (n->hasSideEffects() || !n->blocks().empty()) return false;
    return std::all_of(n->outputs().begin(), n->outputs().end(), [](const jit::Value* v) {
      const c10::TypeKind k = v->type()->kind();
      return k == c10::TypeKind::IntType || k == c10::TypeKind::FloatType || k == c10::TypeKind::BoolType;
    });
  };
  std::vector<jit::Node*> dead;
  for (jit::Node* n : all_nodes(g)) {
    if (n->kind() != c10::prim::Loop || n->hasUses()) continue;
    const jit::Block* body = n->blocks().at(0);
    if (std::all_of(body->nodes().begin(), body->nodes().end(), computes_numbers)) dead.push_back(n);
  }
  for (jit::Node* n : dead) n->destroy();
  return static_cast<int>(dead.size());
}

// A list attribute of the owner's own tensors (a recurrent layer's `_flat_weights`, which its scripted
// forward() hands to aten::lstm/gru): built in its place from reads of the attributes that hold them, so
// LowerGraph makes each a graph input like any parameter. Null when some tensor is not one of the owner's
// attributes (left to LowerGraph, which refuses it naming the type). Inserted before `read`.
jit::Value* list_of_own_tensors(jit::Graph& g, jit::Node* read, const c10::IValue& owner,
                                const std::vector<at::Tensor>& tensors) {
  const c10::ivalue::Object& object = owner.toObjectRef();
  const c10::ClassTypePtr type = object.type();
  std::vector<jit::Value*> items;
  for (const at::Tensor& t : tensors) {
    std::optional<std::string> name;
    for (size_t i = 0; i < type->numAttributes() && !name; ++i) {
      const c10::IValue& slot = object.getSlot(i);
      if (slot.isTensor() && slot.toTensor().unsafeGetTensorImpl() == t.unsafeGetTensorImpl())
        name = type->getAttributeName(i);
    }
    if (!name) return nullptr;
    items.push_back(g.insertGetAttr(read->input(), *name));
  }
  return g.insertNode(g.createList(c10::TensorType::get(), items))->output();
}

// A scripted module reads its non-tensor attributes in forward() (`self.training`, a stride, a flag, an
// optional bias that is None): LowerGraph turns only submodules and tensors into graph inputs. Each other
// attribute becomes the constant it holds, so the branches that read them (`if self.training:`) fold away
// as a trace would have recorded them; a list of the module's tensors becomes the list of their reads.
// Returns how many were replaced.
int attributes_as_constants(jit::Graph& g, const c10::IValue& self) {
  int replaced = 0;
  for (jit::Node* n : all_nodes(g)) {
    if (n->kind() != c10::prim::GetAttr) continue;
    const std::optional<c10::IValue> value = module_value(n->output(), g, self);
    if (!value || value->isObject() || value->isTensor()) continue;
    const jit::WithInsertPoint before(n);
    jit::Value* replacement = nullptr;
    if (value->isTensorList()) {
      replacement = list_of_own_tensors(g, n, *module_value(n->input(), g, self), value->toTensorVector());
    } else if (const c10::optional<jit::Value*> constant =
                   jit::tryInsertConstant(g, *value, c10::nullopt, n->scope())) {
      replacement = *constant;
    }
    if (replacement == nullptr) continue;  // no constant form: left to LowerGraph, which names the type
    n->output()->replaceAllUsesWith(replacement);
    ++replaced;
  }
  return replaced;
}

// Unrolls every loop whose count is a constant and that runs while its condition is true, then folds what
// the unrolled bodies compute from constants (the loop index).
void unroll_fixed_loops(std::shared_ptr<jit::Graph>& g) {
  if (jit::UnrollConstantLoops(g)) jit::ConstantPropagation(g);
}

// forward()'s arguments as `given` --input specs give them (`g`'s inputs are `self`, then the arguments): the
// arguments after them take their defaults, when every one has one (`mask: Optional[Tensor] = None`: the
// branches on it fold as for None, as TorchScript fills defaults in a call); an Optional[Tensor] given a
// tensor is a Tensor (`mask is not None` is then fixed). Otherwise the count is left for the caller to
// refuse.
void bind_forward_arguments(jit::Graph& g, const jit::Module& module, size_t given) {
  const std::vector<c10::Argument>& declared =
      module.get_method("forward").function().getSchema().arguments();  // `self` first
  const size_t arguments = g.inputs().size() - 1;
  if (declared.size() != g.inputs().size()) return;  // not a plain forward(self, ...): left as it is
  if (given < arguments) {
    for (size_t i = given + 1; i <= arguments; ++i) {
      if (!declared[i].default_value()) return;
    }
    const jit::WithInsertPoint at_start(g.block()->nodes().front());
    for (size_t i = arguments; i > given; --i) {
      g.inputs()[i]->replaceAllUsesWith(g.insertConstant(*declared[i].default_value()));
      g.eraseInput(i);
    }
  }
  for (size_t i = 1; i < g.inputs().size(); ++i) {
    jit::Value* v = g.inputs()[i];
    if (const auto optional = v->type()->cast<c10::OptionalType>();
        optional && optional->getElementType()->kind() == c10::TypeKind::TensorType) {
      v->setType(optional->getElementType());
    }
  }
}

// `with torch.no_grad():` in a scripted forward() is prim::Enter and prim::Exit around its nodes, on an
// object that prim::CreateObject made and prim::SetAttr gave its `prev`. Each node between them (and within
// their blocks) gets detail::no_grad_mark(), which the executor runs with grad mode off; the object and its
// nodes go. Other context managers are left (the executor refuses prim::CreateObject, naming its line).
// Returns how many regions.
int mark_no_grad_regions(jit::Graph& g) {
  // The Enter nodes first: what a region removes (its Exit) must not be visited after.
  std::vector<jit::Node*> enters;
  for (jit::Node* n : detail::nodes_within(g.block())) {
    if (n->kind() == c10::prim::Enter) enters.push_back(n);
  }
  const auto mark = [](jit::Node* n) {
    if (n->kind() != c10::prim::Constant) n->i_(detail::no_grad_mark(), 1);  // (a constant needs no grad)
  };
  int regions = 0;
  for (jit::Node* enter : enters) {
    jit::Value* object = enter->input();
    const auto type = object->type()->cast<c10::ClassType>();
    if (!type || !type->name() ||
        type->name()->qualifiedName() != "__torch__.torch.autograd.grad_mode.no_grad")
      continue;
    jit::Node* exit = enter->next();
    for (; exit->kind() != c10::prim::Return; exit = exit->next()) {
      if (exit->kind() == c10::prim::Exit && exit->input() == object) break;
    }
    if (exit->kind() != c10::prim::Exit || enter->output()->hasUses() || exit->output()->hasUses()) continue;
    for (jit::Node* n = enter->next(); n != exit; n = n->next()) {
      mark(n);
      for (jit::Block* b : n->blocks()) {
        for (jit::Node* inner : detail::nodes_within(b)) mark(inner);
      }
    }
    exit->destroy();
    enter->destroy();
    ++regions;
    const std::vector<jit::Use> uses = object->uses();
    const bool only_set = std::all_of(uses.begin(), uses.end(),
                                      [](const jit::Use& u) { return u.user->kind() == c10::prim::SetAttr; });
    if (!only_set || object->node()->kind() != c10::prim::CreateObject) continue;
    for (const jit::Use& u : uses) u.user->destroy();
    object->node()->destroy();
  }
  return regions;
}

bool has_control_flow(jit::Graph& g) {
  const std::vector<jit::Node*> nodes = all_nodes(g);
  return std::any_of(nodes.begin(), nodes.end(), [](const jit::Node* n) { return !n->blocks().empty(); });
}

// The branches of a scripted forward() that every run takes the same way (torch.nn's rank checks, its
// fast-path tests on devices, grad mode and autocast: run_conditions.h), folded from one run of the module's
// own graph on the example inputs. An input the model refuses is refused here, in the model's words.
void fold_conditions_by_running(const std::shared_ptr<jit::Graph>& g, LoadedModel& model, ModuleMode mode,
                                const std::vector<InputSpec>& inputs) {
  const size_t arguments = g->inputs().size() - 1;  // after `self`
  PARTITA_CHECK(inputs.size() == arguments, "'", model.path, "' takes ", arguments, " input(s) but ",
                inputs.size(), " --input were given; pass one --input per forward() argument");
  std::vector<c10::IValue> stack{model.module._ivalue()};
  for (const at::Tensor& t : make_inputs(inputs)) stack.emplace_back(t);
  const ModuleStateGuard untouched(model.module);
  try {
    const RunConditionFolds folds = fold_run_conditions(g, stack, mode);
    // A run went through every check of the forward() on these inputs (none runs when nothing is fixed).
    if (folds.runs > 0) model.checked_inputs = inputs;
    if (folds.folded + folds.loop_counts > 0) {
      std::string what = std::to_string(folds.folded) + " branches";
      if (folds.loop_counts > 0) what += " and " + std::to_string(folds.loop_counts) + " loop counts";
      log_info("'" + model.path + "': " + what + " of the scripted forward() folded as " +
               std::to_string(folds.runs) + " run(s) on the example input(s) took them");
    }
  } catch (const std::exception& e) {
    PARTITA_FAIL("'", model.path, "' rejected the input(s) ", inputs_text(inputs), ": ", last_line(e),
                 "; check the --input shape and dtype against what the model's forward() expects");
  }
}

void reject_unsupported_nodes(const jit::Graph& g, const std::string& path) {
  for (const jit::Node* n : g.nodes()) {
    if (n->kind() == c10::prim::If || n->kind() == c10::prim::Loop) {
      const std::string where = source_of(n);
      PARTITA_FAIL("'", path, "' has data-dependent control flow (", n->kind().toQualString(), " at ",
                   where.empty() ? "an unknown source line" : where,
                   "): partita imports straight-line graphs (a scripted module's branches on its own "
                   "attributes fold away, not these); trace the model with torch.jit.trace(model, "
                   "example_inputs) instead of torch.jit.script");
    }
    PARTITA_CHECK(n->blocks().empty(), "'", path, "': node ", n->kind().toQualString(),
                  " has sub-blocks; trace the model with torch.jit.trace instead of scripting it");
    if (n->kind() == c10::prim::DictConstruct) {
      const std::string where = source_of(n);
      PARTITA_FAIL("'", path, "' builds a dict (", n->kind().toQualString(),
                   where.empty() ? "" : " at " + where,
                   "), which forward() reads or nests in what it returns: partita runs graphs of tensors, "
                   "lists and tuples, and a dict only as what forward() returns; trace a wrapper that "
                   "returns tuple(out.values())");
    }
  }
}

// Maps the module's tensors to their qualified names, so lowered graph inputs get readable names.
std::unordered_map<const c10::TensorImpl*, std::pair<std::string, bool>> tensor_names(const jit::Module& m) {
  std::unordered_map<const c10::TensorImpl*, std::pair<std::string, bool>> names;
  for (const auto& p : m.named_parameters(/*recurse=*/true)) {
    names.emplace(p.value.unsafeGetTensorImpl(), std::make_pair(p.name, p.value.requires_grad()));
  }
  for (const auto& b : m.named_buffers(/*recurse=*/true)) {
    names.emplace(b.value.unsafeGetTensorImpl(), std::make_pair(b.name, false));
  }
  return names;
}

std::string print_constant(const c10::IValue& iv) {
  if (iv.isTensor()) {
    const auto& t = iv.toTensor();
    std::ostringstream os;
    os << "tensor" << t.sizes();
    return os.str();
  }
  std::ostringstream os;
  os << iv;
  return os.str();
}

// A forward() that updates its own module state in place and then reads it (a call counter self.n.add_(1)
// that scales the output; a weight clamped under torch.no_grad(), which a trace records without the
// no_grad) computes something that depends on how often forward has run. partita runs forward more often
// than once per step (its checks and measurements, microbatches, replicas), and its pipelines run a stage's
// next forward before the last backward that saved the state. Refused at load, naming the state, the write
// and the first read. Written and never read again is fine (BatchNorm's num_batches_tracked.add_(1)).
void reject_state_read_after_its_update(const Graph& ir, const std::string& path) {
  const std::vector<ValueId> root = storage_roots(ir);
  std::vector<NodeId> first_write(ir.num_values(), kNoNode);
  for (const Node& n : ir.nodes()) {
    for (ValueId in : n.inputs) {
      const NodeId w = first_write[root[in]];
      if (w == kNoNode) continue;
      const Value& state = ir.value(root[in]);
      // nn.Embedding(max_norm=...): the renormalization is idempotent, but replicas and microbatches of one
      // step would each write rows of the one shared table while others read it.
      PARTITA_CHECK(ir.node(w).op != "aten::embedding_renorm_", "'", path,
                    "': nn.Embedding(max_norm=...) renormalizes rows of parameter '", state.name,
                    "' in place inside forward() (", describe_node(ir.node(w)), ") before reading them (",
                    describe_node(n),
                    "), and partita's replicas and microbatches would each write the one shared table while "
                    "others read it. Drop max_norm, or renormalize the table outside forward() (after each "
                    "optimizer step, under torch.no_grad(): weight.renorm_(2, 0, max_norm))");
      PARTITA_FAIL(
          "'", path, "': forward() updates ", state.role == ValueRole::kBuffer ? "buffer" : "parameter", " '",
          state.name, "' in place (", describe_node(ir.node(w)), ") and then reads it (", describe_node(n),
          "): its results depend on how often forward runs, and partita runs it more than once per "
          "step (checks, measurements, microbatches, replicas). Update such state outside forward(), "
          "or compute the new value without writing the module's tensor");
    }
    if (!is_in_place_op(n.op) || n.inputs.empty()) continue;
    const ValueId r = root[n.inputs[0]];
    const ValueRole role = ir.value(r).role;
    if ((role == ValueRole::kBuffer || role == ValueRole::kParameter) && first_write[r] == kNoNode)
      first_write[r] = n.id;
  }
}

}  // namespace

LoadedModel load_model(const std::string& path, ModuleMode mode, const std::vector<InputSpec>& inputs) {
  PARTITA_CHECK(std::filesystem::exists(path), "model file '", path,
                "' does not exist; pass a TorchScript file saved with torch.jit.trace(...).save(path)");
  LoadedModel model;
  model.path = path;
  try {
    model.module = jit::load(path);
  } catch (const std::exception& e) {
    const std::string why = first_line(e);
    // A zip archive without TorchScript's constants.pkl is what torch.save() writes.
    PARTITA_CHECK(why.find("constants.pkl") == std::string::npos, "'", path,
                  "' is a torch.save() file (a state_dict or a pickled nn.Module), not TorchScript; save the "
                  "model with torch.jit.trace(model, example).save(path)");
    PARTITA_CHECK(why.find("PytorchStreamReader") == std::string::npos, "'", path,
                  "' is not a TorchScript file (torch.jit.load: ", why,
                  "); save one with torch.jit.trace(model, example).save(path)");
    PARTITA_FAIL("'", path, "' is TorchScript that LibTorch ", TORCH_VERSION,
                 " cannot load (torch.jit.load: ", why,
                 "); save the model again with torch.jit.trace(model, example).save(path) from PyTorch ",
                 TORCH_VERSION, " or older, without torch.jit.freeze or optimize_for_inference");
  }
  // A traced graph recorded the mode it was traced in and reads no flag; a scripted one reads each module's
  // `training` (folded below), as torch.nn's train() and eval() set it.
  model.module.train(mode == ModuleMode::kTrain);
  std::shared_ptr<jit::Graph> graph;
  std::vector<c10::IValue> slots;
  try {
    auto g = model.module.get_method("forward").graph()->copy();
    jit::Inline(*g);
    if (!inputs.empty()) bind_forward_arguments(*g, model.module, inputs.size());
    // (A scripted forward() need not read an attribute that is not a submodule to branch on its input.)
    if (attributes_as_constants(*g, model.module._ivalue()) > 0 || has_control_flow(*g)) {
      // A scripted forward() also branches on what a run fixes (ranks, devices, grad mode: run_conditions.h):
      // folded from one run on the example inputs, which refuses an input the model refuses. The checks
      // left read sizes, which partita learns by running: the branches that raise go (counted), and
      // annotate_shapes runs the module itself once (unless the folding run went through the checks on the
      // same inputs) so that an input it would refuse is refused in its words.
      const auto raises = [&] {
        const std::vector<jit::Node*> nodes = all_nodes(*g);
        return std::count_if(nodes.begin(), nodes.end(),
                             [](const jit::Node* n) { return n->kind() == c10::prim::RaiseException; });
      };
      jit::ConstantPropagation(g);
      // A loop of a fixed count (`for i in range(3)`, or over a count attribute) is what a trace records:
      // its body that many times.
      unroll_fixed_loops(g);
      if (!inputs.empty() && has_control_flow(*g)) fold_conditions_by_running(g, model, mode, inputs);
      const auto before = raises();
      jit::EliminateExceptions(g);
      jit::ConstantPropagation(g);
      unroll_fixed_loops(g);  // counts the run fixed (a loop over an input's dimensions)
      jit::EliminateDeadCode(g);
      if (drop_unread_number_loops(*g) > 0) jit::EliminateDeadCode(g);
      model.dropped_checks = static_cast<int>(before - raises());
    }
    mark_no_grad_regions(*g);
    // Warnings in branches folded away above are not the model's to give (torch.nn's attention warns about a
    // byte mask that no one passed): those left are logged.
    log_and_drop_warnings(*g, path);
    std::tie(graph, slots) = jit::LowerGraph(*g, model.module._ivalue());
    jit::ConstantPropagation(graph);
    tensor_constant_operands_as_numbers(*graph);
    jit::EliminateDeadCode(graph);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    PARTITA_FAIL("cannot lower the graph of '", path, "': ", first_line(e),
                 "; partita supports models saved with torch.jit.trace or torch.jit.script");
  }
  model.output_keys = return_dict_values_as_tuple(*graph);
  reject_unsupported_nodes(*graph, path);
  model.torch_graph = graph;

  Graph& ir = model.ir;
  std::unordered_map<const jit::Value*, ValueId> ids;
  const auto names = tensor_names(model.module);
  const size_t num_inputs = graph->inputs().size();
  const size_t num_user = num_inputs - slots.size();
  for (size_t i = 0; i < num_inputs; ++i) {
    const jit::Value* v = graph->inputs()[i];
    if (i < num_user) {
      PARTITA_CHECK(
          kind_of(v->type()) == ValueKind::kTensor, "'", path, "': forward() argument ", i + 1, " (",
          v->debugName(), ") is a ", v->type()->repr_str(),
          ", and partita gives every --input as one tensor; trace a wrapper whose forward() takes the "
          "tensors as separate arguments");
      ids[v] = ir.add_input(v->debugName(), kind_of(v->type()));
      continue;
    }
    const c10::IValue& slot = slots[i - num_user];
    if (!slot.isTensor()) {
      const std::string type = slot.type()->repr_str();
      const jit::Node* reader = v->uses().empty() ? nullptr : v->uses().front().user;
      const std::string read_by = reader == nullptr
                                      ? std::string()
                                      : std::string(", read by ") + reader->kind().toQualString() +
                                            (scope_of(reader).empty() ? "" : " in " + scope_of(reader));
      // Dynamic and static quantization keep each layer's weights as packed objects that quantized:: ops
      // read.
      const bool quantized =
          type.find("quantized") != std::string::npos ||
          (reader != nullptr && std::string(reader->kind().ns().toUnqualString()) == "quantized");
      PARTITA_CHECK(
          !quantized, "'", path, "': module state '", v->debugName(), "' is a ", type, read_by,
          ": the packed weights of a quantized model, which partita cannot split, move or time; give "
          "partita the float model (before torch.ao.quantization's quantize_dynamic or convert)");
      PARTITA_FAIL("'", path, "': module state '", v->debugName(), "' is a ", type, read_by,
                   ", not a tensor; partita supports modules whose state is tensors");
    }
    const auto it = names.find(slot.toTensor().unsafeGetTensorImpl());
    const std::string name = it != names.end() ? it->second.first : v->debugName();
    const bool trainable = it != names.end() && it->second.second;
    ids[v] = ir.add_parameter(name, trainable);
    model.parameters.push_back(slot.toTensor());
  }
  for (jit::Node* n : graph->nodes()) {
    if (n->kind() == c10::prim::Constant) {
      const jit::Value* out = n->output();
      const auto iv = jit::toIValue(out);
      PARTITA_ASSERT(iv.has_value(), "constant without a value");
      const ValueId id = ir.add_constant(kind_of(out->type()), print_constant(*iv));
      ids[out] = id;
      model.constants.push_back({id, *iv});
      continue;
    }
    std::vector<ValueId> ins, outs;
    for (const jit::Value* in : n->inputs()) ins.push_back(ids.at(in));
    for (const jit::Value* out : n->outputs()) {
      const ValueId id = ir.add_value(kind_of(out->type()), out->debugName());
      ids[out] = id;
      outs.push_back(id);
    }
    const NodeId nid = ir.add_node(n->kind().toQualString(), std::move(ins), std::move(outs));
    ir.node(nid).scope = scope_of(n);
    ir.node(nid).source = source_of(n);
    model.torch_nodes.push_back(n);
  }
  std::vector<ValueId> outputs;
  for (const jit::Value* out : graph->outputs()) outputs.push_back(ids.at(out));
  ir.set_outputs(std::move(outputs));
  ir.check_invariants();
  reject_state_read_after_its_update(ir, path);
  return model;
}

ModuleStateGuard::ModuleStateGuard(const torch::jit::Module& module) {
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& b : module.buffers(/*recurse=*/true)) {
    if (b.defined()) buffers_.push_back({b, b.clone()});
  }
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  const std::lock_guard<std::mutex> lock(generator.mutex());
  generator_state_ = generator.get_state();
}

ModuleStateGuard::~ModuleStateGuard() {
  try {
    torch::NoGradGuard no_grad;
    for (Saved& b : buffers_) b.own.copy_(b.copy);
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    const std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(generator_state_);
  } catch (const std::exception& e) {
    log_warning(std::string("could not restore the module's buffers after a check run: ") + e.what());
  }
}

ModelSnapshot::ModelSnapshot(const LoadedModel& model) {
  torch::NoGradGuard no_grad;
  values_.reserve(model.parameters.size());
  for (const auto& t : model.parameters)
    values_.push_back(t.defined() ? t.detach().clone() : torch::Tensor());
}

void ModelSnapshot::restore(LoadedModel& model) const {
  PARTITA_CHECK(model.parameters.size() == values_.size(), "cannot restore a snapshot of ", values_.size(),
                " tensors into a model with ", model.parameters.size(),
                "; restore into the model it was taken of");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < values_.size(); ++i) {
    torch::Tensor& t = model.parameters[i];
    if (!t.defined()) continue;
    PARTITA_CHECK(values_[i].defined() && t.sizes() == values_[i].sizes(), "cannot restore tensor ", i,
                  " of shape ", t.sizes(), " from a snapshot of another model");
    t.copy_(values_[i]);
    if (t.grad().defined()) t.mutable_grad().reset();
  }
}

namespace {

// Example inputs larger than the memory this machine has free cannot be drawn: say so before the allocator
// fails (or the kernel's OOM killer ends the process with no word). Small inputs skip reading /proc.
void check_inputs_fit_in_memory(const std::vector<InputSpec>& specs) {
  constexpr int64_t kAlwaysFits = int64_t{1} << 30;
  int64_t bytes = 0;
  for (const auto& s : specs) {
    int64_t b = 0;
    const bool overflow = __builtin_mul_overflow(s.meta().numel(), dtype_size(s.dtype), &b) ||
                          __builtin_add_overflow(bytes, b, &bytes);
    if (overflow) bytes = std::numeric_limits<int64_t>::max();
  }
  if (bytes <= kAlwaysFits) return;
  std::string text;
  for (const auto& s : specs) text += (text.empty() ? "" : " ") + s.to_string();
  const CpuInfo cpu = discover_cpu();
  const Bytes free = cpu.memory_available.value() > 0 ? cpu.memory_available : cpu.memory_total;
  PARTITA_CHECK(free.value() <= 0 || bytes <= free.value(), "the inputs ", text, " take ",
                format_bytes(Bytes(bytes)), ", more than the ", format_bytes(free),
                " of memory this machine has free; use a smaller batch");
}

}  // namespace

std::vector<torch::Tensor> make_inputs(const std::vector<InputSpec>& specs, uint64_t seed,
                                       const torch::Device& device) {
  check_inputs_fit_in_memory(specs);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<torch::Tensor> tensors;
  for (const auto& s : specs) {
    torch::Tensor t;
    switch (s.dtype) {
      case DType::kInt64:
      case DType::kInt32:
      case DType::kBool: {
        const int64_t high = s.high > 0 ? s.high : (s.dtype == DType::kBool ? 2 : 100);
        const auto st = s.dtype == DType::kInt64   ? torch::kInt64
                        : s.dtype == DType::kInt32 ? torch::kInt32
                                                   : torch::kBool;
        t = torch::randint(0, high, s.shape, gen, torch::TensorOptions().dtype(torch::kInt64)).to(st);
        break;
      }
      case DType::kFloat32:
      case DType::kFloat16:
      case DType::kBFloat16:
      case DType::kFloat64: {
        const auto st = s.dtype == DType::kFloat32    ? torch::kFloat32
                        : s.dtype == DType::kFloat16  ? torch::kFloat16
                        : s.dtype == DType::kBFloat16 ? torch::kBFloat16
                                                      : torch::kFloat64;
        t = torch::randn(s.shape, gen, torch::TensorOptions().dtype(torch::kFloat32)).to(st);
        break;
      }
      default:
        PARTITA_FAIL("input dtype ", dtype_name(s.dtype), " is not supported; use ", kInputDtypes);
    }
    tensors.push_back(t.to(device));
  }
  return tensors;
}

}  // namespace partita

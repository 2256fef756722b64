// Shapes and dtypes of every value, from one run of the model on example inputs.
#include "partita/core/error.h"
#include "partita/graph/op_cost.h"
#include "partita/torch_bridge/dtype.h"
#include "partita/torch_bridge/executor.h"
#include "partita/torch_bridge/model.h"

namespace partita {

namespace {

TensorMeta meta_of(const torch::Tensor& t) {
  return TensorMeta{t.sizes().vec(), from_torch(t.scalar_type())};
}

// The tensors an IValue holds (a tensor, or the tensors of a list/tuple).
std::vector<TensorMeta> metas_of(const c10::IValue& iv) {
  std::vector<TensorMeta> metas;
  if (iv.isTensor()) {
    if (iv.toTensor().defined()) metas.push_back(meta_of(iv.toTensor()));
  } else if (iv.isTensorList()) {
    for (const torch::Tensor& t : iv.toTensorVector()) metas.push_back(meta_of(t));
  } else if (iv.isTuple()) {
    for (const auto& e : iv.toTupleRef().elements()) {
      auto inner = metas_of(e);
      metas.insert(metas.end(), inner.begin(), inner.end());
    }
  } else if (iv.isList()) {
    for (const auto& e : iv.toListRef()) {
      auto inner = metas_of(e);
      metas.insert(metas.end(), inner.begin(), inner.end());
    }
  }
  return metas;
}

class ShapeRecorder : public ExecutionObserver {
 public:
  explicit ShapeRecorder(Graph& g) : graph_(g) {}
  void on_node_end(const Node& node, c10::ArrayRef<c10::IValue> outputs) override {
    for (size_t i = 0; i < outputs.size(); ++i) graph_.value(node.outputs[i]).tensors = metas_of(outputs[i]);
  }

 private:
  Graph& graph_;
};

}  // namespace

void annotate_shapes(LoadedModel& model, const std::vector<InputSpec>& specs) {
  Graph& g = model.ir;
  PARTITA_CHECK(!specs.empty() || g.inputs().empty(), "no --input given: '", model.path, "' takes ",
                g.inputs().size(),
                " input(s); pass one --input SPEC per forward() argument, e.g. --input 8x3x224x224");
  PARTITA_CHECK(specs.size() == g.inputs().size(), "'", model.path, "' takes ", g.inputs().size(),
                " input(s) but ", specs.size(),
                " --input were given; pass one --input per forward() argument");
  std::vector<c10::IValue> inputs;
  for (const auto& t : make_inputs(specs)) inputs.emplace_back(t);
  for (size_t i = 0; i < specs.size(); ++i) {
    Value& input = g.value(g.inputs()[i]);
    input.tensors = {specs[i].meta()};
    input.shared = specs[i].shared;
  }
  for (size_t i = 0; i < model.parameters.size(); ++i) {
    g.value(g.parameters()[i].value).tensors = {meta_of(model.parameters[i])};
  }
  for (const auto& c : model.constants) g.value(c.value).tensors = metas_of(c.ivalue);

  torch::NoGradGuard no_grad;
  // These runs are for the shapes: in training mode they would update batch norm's statistics and draw
  // dropout masks, which the model and the generator keep as they were.
  const ModuleStateGuard untouched(model.module);
  if (model.dropped_checks > 0 && model.checked_inputs != specs) {
    try {
      std::vector<c10::IValue> own;  // a forward that writes its input in place writes this copy
      for (const auto& t : make_inputs(specs)) own.emplace_back(t);
      model.module.forward(own);
    } catch (const std::exception& e) {
      PARTITA_FAIL("'", model.path, "' rejected the input(s) ", inputs_text(specs), ": ", last_line(e),
                   "; check the --input shape and dtype against what the model's forward() expects");
    }
  }
  const Executor executor(model);
  ShapeRecorder recorder(g);
  try {
    executor.run(inputs, &recorder);
  } catch (const Error& e) {
    PARTITA_FAIL("'", model.path, "' rejected the input(s) ", inputs_text(specs), ": ", e.what(),
                 "; check the --input shape and dtype against what the model was traced with");
  }
  estimate_costs(g);
}

}  // namespace partita

#pragma once
// Runs partita's IR node by node through the ATen operators of the lowered TorchScript graph.
//
// The executor is the faithful reference: the same ops, in the same order, on the same tensors as
// TorchScript, so outputs and (with grad mode on and parameters requiring grad) autograd gradients match the
// module's. Inference vs training is the caller's grad mode (torch::NoGradGuard). A value's tensor is
// released after its last use. Thread safety: run() is const and may be called from several threads on
// distinct environments.
#include <vector>

#include <torch/script.h>

#include "partita/torch_bridge/model.h"

namespace partita {

// Per-node hook (the profiler, shape recorder and tracers plug in here). Called on the executing thread.
class ExecutionObserver {
 public:
  virtual ~ExecutionObserver() = default;
  virtual void on_node_begin(const Node& /*node*/) {}
  virtual void on_node_end(const Node& /*node*/, c10::ArrayRef<c10::IValue> /*outputs*/) {}
};

struct ExecutorOptions {
  // Where parameters, constants and inputs live; the model's device constants (the device it was traced on,
  // as in torch.arange(n, device=x.device)) name this one.
  torch::Device device = torch::kCPU;
  // One tensor per model parameter, used as given (the runtime's engine places them: the model's own, a copy
  // on the device, or the model's tensor moved there). Empty: the model's parameters, copied to `device`
  // when it is not the CPU as leaves that keep requires_grad (their gradients stay on the device).
  std::vector<torch::Tensor> parameters{};
  // Dropout runs as the identity and batch norm on its running statistics (where it keeps them), as in eval
  // mode, whatever flag the trace recorded, and random draws (rand, randn, bernoulli, normal and their _like
  // and in-place forms) come out as their expected value. The batch check uses it to ask whether anything
  // besides these makes a sample's output depend on the rest of its batch; `verify --plan` to compare a
  // plan's forward with one device's.
  bool as_in_eval_without_draws = false;
  // The generator the model's random draws use (dropout masks included; dropout is then run as ATen defines
  // it on the CPU, with masks from this generator). Undefined: the device's default generator, as
  // TorchScript draws. The runtime gives each worker its own, so workers sharing a device do not interleave
  // their draws, and a checkpointed stage replays its forward's draws by restoring the generator's state.
  at::Generator generator{};
};

class Executor {
 public:
  // `model` must outlive the executor.
  explicit Executor(const LoadedModel& model, ExecutorOptions options = {});

  // One value slot per IR value; graph inputs, parameters and constants filled in. An input the model updates
  // in place (inputs_written_in_place) is copied first, so every run starts from the caller's values:
  // profiling repeats, concurrent replicas and microbatches (views of one batch) do not see each other's
  // writes, as in a training loop where each step gets a fresh batch. The caller's tensor is left as it was
  // (TorchScript's own forward would change it).
  using Environment = std::vector<c10::IValue>;
  Environment make_environment(const std::vector<c10::IValue>& inputs) const;

  // Runs nodes [first, last] (node order) on env; values whose last use lies in the range are released.
  // A failing node throws partita::Error naming the node, its op, source line and the torch message.
  void run_nodes(NodeId first, NodeId last, Environment& env, ExecutionObserver* observer = nullptr) const;

  // One node on explicit inputs (in the node's input order); returns its outputs. For per-op profiling.
  std::vector<c10::IValue> run_node(NodeId node, std::vector<c10::IValue> inputs) const;

  // Whole graph: returns the graph outputs.
  std::vector<c10::IValue> run(const std::vector<c10::IValue>& inputs,
                               ExecutionObserver* observer = nullptr) const;

  const std::vector<torch::Tensor>& parameters() const { return parameters_; }
  const LoadedModel& model() const { return model_; }
  // ExecutorOptions::generator (undefined: the device's default generator).
  const at::Generator& generator() const { return options_.generator; }

 private:
  struct Step {
    mutable torch::jit::Operation op{nullptr};  // torch 1.13: operator() is non-const
    std::vector<ValueId> inputs;
    std::vector<ValueId> outputs;
    std::vector<ValueId> release_after;  // values whose last use is this step
  };
  const LoadedModel& model_;
  ExecutorOptions options_;
  std::vector<Step> steps_;
  std::vector<torch::Tensor> parameters_;
  std::vector<c10::IValue> constants_;  // parallel to model_.constants, on the device
  std::vector<bool> written_inputs_;    // [user input] updated in place by the model: copied per run
};

// Describes a node for error messages: "node 12 aten::_convolution (layer1.0.conv1, model.py:42)".
std::string describe_node(const Node& node);

}  // namespace partita

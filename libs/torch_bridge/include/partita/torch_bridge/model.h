#pragma once
// A TorchScript model imported into partita: the torch module, its lowered graph (calls inlined, parameters
// and buffers turned into graph inputs, constants folded) and the torch-free IR that mirrors it node for
// node.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/script.h>

#include "partita/graph/graph.h"
#include "partita/torch_bridge/input_spec.h"
#include "partita/torch_bridge/module_mode.h"

namespace partita {

struct LoadedModel {
  std::string path;
  torch::jit::Module module;
  std::shared_ptr<torch::jit::Graph> torch_graph;  // lowered; inputs = user inputs, then parameters/buffers
  Graph ir;                                        // ir.node(i) is torch_nodes[i]
  std::vector<torch::jit::Node*> torch_nodes;
  std::vector<torch::Tensor> parameters;  // in the order of ir.parameters() (the module's own tensors)
  struct Constant {
    ValueId value;
    c10::IValue ivalue;
  };
  std::vector<Constant> constants;  // values the executor pre-fills
  // forward() returns a dict with these keys: the graph returns the tuple of its values in this order
  // (ir's output is that tuple). Empty when it returns no dict.
  std::vector<std::string> output_keys;
  // The checks of a scripted forward() that raise on what only running can tell (a size; a rank when loaded
  // without inputs), dropped from the graph; annotate_shapes runs the module itself once when there are any,
  // unless the module already ran on these inputs at load (the run that folded its branches, checks and all).
  int dropped_checks = 0;
  std::optional<std::vector<InputSpec>> checked_inputs;

  int num_user_inputs() const { return static_cast<int>(ir.inputs().size()); }
};

// Loads, inlines, lowers and folds a TorchScript file, traced or scripted: a scripted module's attributes
// that are not tensors or submodules (`training`, a stride, a bias that is None) become constants, so the
// branches they decide fold away, and loops of a constant count are unrolled; given `inputs`, forward()'s
// arguments after them take their defaults (an Optional[Tensor] given one is a Tensor), and the branches and
// loop counts on what a run fixes (ranks, devices, grad mode as `mode` runs: run_conditions.h) fold too,
// learnt from one run on example inputs of those specs (an input the model refuses is refused here, in its
// words); its checks that raise are dropped (LoadedModel::dropped_checks). Throws partita::Error for a
// missing file, a file that is not TorchScript, and graphs with control flow left that depends on the data
// (names the node and its source line).
LoadedModel load_model(const std::string& path, ModuleMode mode = ModuleMode::kEval,
                       const std::vector<InputSpec>& inputs = {});

// Runs the model once on `inputs` through the executor and records every value's shapes and dtypes in the IR,
// then estimates per-node costs. Errors name the input and the node where the model rejected it. A scripted
// model with dropped checks runs its own forward() first (in its words when it refuses), unless it ran
// through them on these inputs at load (LoadedModel::checked_inputs).
void annotate_shapes(LoadedModel& model, const std::vector<InputSpec>& specs);

// The values of a model's parameters and buffers at one moment. Measured training runs restore it so each
// starts from the same weights: steps repeated on one example batch overfit it, and an overfit model's
// backward carries subnormal floats, which the CPU computes several times slower (measured on an Intel Xeon
// VM: a 256x64 MLP's Adam step went 3.7 -> 21.6 ms over successive runs of one plan in one process).
class ModelSnapshot {
 public:
  explicit ModelSnapshot(const LoadedModel& model);
  // Copies the saved values into the model's own tensors (their identity kept: the module and any optimizer
  // still hold them) and drops their gradients. The model must be the one snapshotted or a load of the same
  // file; a tensor of another shape is an error.
  void restore(LoadedModel& model) const;

 private:
  std::vector<torch::Tensor> values_;
};

// Runs of a module made for what they tell (its checks, which branches it takes), not for their effects:
// keeps its buffers (batch norm's running statistics, which a forward in training mode updates) and the CPU
// random generator (which dropout draws from) as they were, restoring both when it goes out of scope, and
// keeps its warnings (`warnings.warn` in forward(), which the importer logs once) from being printed on this
// thread.
class ModuleStateGuard {
 public:
  explicit ModuleStateGuard(const torch::jit::Module& module);
  ~ModuleStateGuard();
  ModuleStateGuard(const ModuleStateGuard&) = delete;
  ModuleStateGuard& operator=(const ModuleStateGuard&) = delete;

 private:
  struct Saved {
    torch::Tensor own;   // the module's buffer
    torch::Tensor copy;  // its value when the guard was made
  };
  struct Silent : c10::WarningHandler {
    void process(const c10::SourceLocation&, const std::string&, const bool) override {}
  };
  std::vector<Saved> buffers_;
  torch::Tensor generator_state_;
  Silent silent_;
  c10::Warning::WarningHandlerGuard quiet_{&silent_};  // the handler is per thread
};

// Example inputs for specs: normal floats, integers in [0, high); deterministic for a seed.
std::vector<torch::Tensor> make_inputs(const std::vector<InputSpec>& specs, uint64_t seed = 0,
                                       const torch::Device& device = torch::kCPU);

// The model-facing description of a torch error: its first line, without the C++ stack dump.
std::string first_line(const std::exception& e);
// Its last line: where the TorchScript interpreter puts the message of an exception a scripted forward()
// raised, after its traceback.
std::string last_line(const std::exception& e);

}  // namespace partita

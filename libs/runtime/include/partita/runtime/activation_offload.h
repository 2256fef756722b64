#pragma once
// Activation offload: while an ActivationOffloadScope is alive on a thread, every tensor that autograd saves
// for backward on that thread (a forward op's inputs or outputs its backward needs) is copied to host memory
// when it is saved, and the saved copy goes back to the tensor's device when backward unpacks it. The
// device's own tensor is then freed as soon as the forward drops it, instead of living until backward.
//
// How: LibTorch's C++ API has no saved-tensor hooks of its own (at::SavedTensorDefaultHooks takes Python
// objects), but every torch::autograd::SavedVariable asks the default autograd Engine for hooks
// (Engine::get_default_saved_variable_hooks, a virtual that returns none in the base engine). partita
// installs a subclass of the base engine as the process's default (torch::autograd::set_default_engine_stub,
// as PyTorch's Python engine does) that answers with host-copy hooks only on a thread inside a scope, and
// otherwise answers none, as the base engine does: outside a scope nothing changes.
//
// What is copied: strided tensors with their own storage. Left where they are (the hooks keep the tensor
// itself): tensors whose storage belongs to one of the scope's `keep` tensors (parameters, values the caller
// holds until backward anyway: copying them would free nothing), overlapping views (an expanded tensor would
// take more host memory than it takes on the device), wrapped numbers, sparse and other non-strided tensors.
// From a CUDA device the copy goes to pinned host memory without blocking, and comes back without blocking:
// both on the stream current at the time, which is the device's default stream in the engine's forward and in
// autograd's backward of it (copies on one stream run in order, and the caching host allocator keeps pinned
// memory alive until the copy that reads it is done). On a CPU device the copy is a second host tensor: it
// saves nothing (the tensor was in host memory already) and costs a copy; it exists so the path runs, and is
// tested, on machines without a GPU.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

namespace partita {

// What the scopes of one stage copied to host memory.
struct OffloadedActivations {
  int64_t bytes = 0;    // bytes of the host copies (element size x elements)
  int64_t tensors = 0;  // saved tensors copied

  OffloadedActivations& operator+=(const OffloadedActivations& other) {
    bytes += other.bytes;
    tensors += other.tensors;
    return *this;
  }
};

// Makes partita's autograd engine the process's default, once (thread-safe; later calls only check that it
// still is). Returns nullopt when activation offload works in this process, otherwise why not, as one line:
// another autograd engine was installed first (PyTorch's Python engine, when partita runs inside a Python
// process that imported torch). Call it before the threads that run partita's forwards and backwards start
// (the Engine constructor does): the stub itself is an atomic in LibTorch, but a backward already running on
// the engine being replaced keeps that engine for the rest of its run.
std::optional<std::string> install_activation_offload();

// While alive, the tensors autograd saves on the constructing thread are copied to host memory (see the top
// comment). Scopes nest: the innermost one counts. Must be destroyed on the thread that made it. Throws
// partita::Error when install_activation_offload() fails.
class ActivationOffloadScope {
 public:
  // `keep`: tensors held until backward anyway; saved tensors that share storage with one of them are not
  // copied. `tally` accumulates what is copied; it must outlive the scope. Only the constructing thread
  // writes it.
  ActivationOffloadScope(const std::vector<torch::Tensor>& keep, OffloadedActivations& tally);
  ~ActivationOffloadScope();
  ActivationOffloadScope(const ActivationOffloadScope&) = delete;
  ActivationOffloadScope& operator=(const ActivationOffloadScope&) = delete;

  struct State;

 private:
  std::unique_ptr<State> state_;
  const State* previous_ = nullptr;
};

// Saved tensors copied to host by every scope of the process so far, on any thread (for tests).
int64_t offloaded_tensors_total();

}  // namespace partita

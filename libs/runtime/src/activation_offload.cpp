#include "partita/runtime/activation_offload.h"

#include <algorithm>
#include <atomic>

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/saved_variable_hooks.h>

#include "partita/core/error.h"

namespace partita {

struct ActivationOffloadScope::State {
  std::vector<const c10::StorageImpl*> keep;  // sorted
  OffloadedActivations* tally = nullptr;

  bool kept(const at::Tensor& t) const {
    return std::binary_search(keep.begin(), keep.end(), t.storage().unsafeGetStorageImpl());
  }
};

namespace {

using ScopeState = ActivationOffloadScope::State;

// The innermost scope of this thread; null outside scopes (the engine then hands out no hooks).
thread_local const ScopeState* current_scope = nullptr;
std::atomic<int64_t> copied_total{0};

// One saved tensor: its host copy (or the tensor itself when copying would free nothing), and its device.
class HostCopyHooks final : public torch::autograd::SavedVariableHooks {
 public:
  explicit HostCopyHooks(const ScopeState& scope) : scope_(&scope) {}

  // Called right after the engine made this object, on the same thread, inside the same scope.
  void call_pack_hook(const at::Tensor& tensor) override {
    const ScopeState& scope = *scope_;
    scope_ = nullptr;
    if (!worth_copying(tensor) || scope.kept(tensor)) {
      kept_ = tensor;
      return;
    }
    device_ = tensor.device();
    const bool pinned = tensor.is_cuda();
    const auto options = tensor.options().device(at::kCPU).pinned_memory(pinned);
    host_ = tensor.is_non_overlapping_and_dense()
                ? at::empty_strided(tensor.sizes(), tensor.strides(), options)
                : at::empty(tensor.sizes(), options);
    host_.copy_(tensor, /*non_blocking=*/pinned);
    scope.tally->bytes += static_cast<int64_t>(host_.numel()) * static_cast<int64_t>(host_.element_size());
    ++scope.tally->tensors;
    copied_total.fetch_add(1, std::memory_order_relaxed);
  }

  at::Tensor call_unpack_hook() override {
    if (kept_.defined()) return kept_;
    return device_.is_cpu() ? host_ : host_.to(device_, /*non_blocking=*/true);
  }

 private:
  static bool worth_copying(const at::Tensor& t) {
    if (t.unsafeGetTensorImpl()->is_wrapped_number() || t.layout() != at::kStrided || !t.has_storage() ||
        t.numel() == 0)
      return false;
    // An overlapping view (expand) would take more memory as a dense copy than its storage takes.
    const auto dense_bytes = static_cast<size_t>(t.numel()) * static_cast<size_t>(t.element_size());
    return dense_bytes <= t.storage().nbytes();
  }

  const ScopeState* scope_;
  at::Tensor kept_;
  at::Tensor host_;
  at::Device device_ = at::kCPU;
};

// The base engine, answering host-copy hooks inside a scope. Everything else is the base engine's.
class OffloadEngine final : public torch::autograd::Engine {
 public:
  // Autograd runs a GPU's backward nodes on device threads that an engine starts when it first runs a
  // backward. LibTorch 1.13 starts them once per engine; later versions once per process (a static flag in
  // initialize_device_threads_pool), for whichever engine gets there first. When the base engine already ran
  // a backward, this engine starts its own, or its first backward on a GPU finds no ready queue (LibTorch
  // 2.11 on the H200: "INTERNAL ASSERT FAILED ... device_ready_queues_"). Without a GPU there are none to
  // start.
  OffloadEngine() {
    initialize_device_threads_pool();
    if (device_ready_queues_.empty()) start_device_threads();
  }
  // Static destruction at exit: point the stub back at the base engine (built before this one, so destroyed
  // after it), then stop this engine's device threads before the base class goes away, as Engine asks.
  ~OffloadEngine() override {
    torch::autograd::set_default_engine_stub(&Engine::get_base_engine);
    stop();
  }
  std::unique_ptr<torch::autograd::SavedVariableHooks> get_default_saved_variable_hooks() override {
    const ScopeState* scope = current_scope;
    if (scope == nullptr) return nullptr;
    return std::make_unique<HostCopyHooks>(*scope);
  }
};

torch::autograd::Engine& offload_engine() {
  static OffloadEngine engine;
  return engine;
}

}  // namespace

std::optional<std::string> install_activation_offload() {
  // Thread-safe once: a function-local static. The base engine is made first (get_base_engine), so it
  // outlives this one at exit. Replacing the stub is an atomic store in LibTorch (a std::atomic since the
  // stub exists; Debian's 1.13 compiles it to xchg); backwards that started on the base engine finish there.
  static const std::optional<std::string> installed = []() -> std::optional<std::string> {
    torch::autograd::Engine& base = torch::autograd::Engine::get_base_engine();
    if (&torch::autograd::Engine::get_default_engine() != &base) {
      return std::string(
          "activation offload needs partita's autograd engine, but this process already uses another one "
          "(PyTorch's Python engine?); run the plan with partita's command, or plan without activation "
          "offload");
    }
    offload_engine();
    torch::autograd::set_default_engine_stub(&offload_engine);
    return std::nullopt;
  }();
  if (installed) return installed;
  if (&torch::autograd::Engine::get_default_engine() != &offload_engine()) {
    return std::string(
        "activation offload needs partita's autograd engine, but another one replaced it in this process "
        "(importing PyTorch's Python module does); plan without activation offload");
  }
  return std::nullopt;
}

ActivationOffloadScope::ActivationOffloadScope(const std::vector<torch::Tensor>& keep,
                                               OffloadedActivations& tally)
    : state_(std::make_unique<State>()), previous_(current_scope) {
  if (const auto why_not = install_activation_offload()) PARTITA_FAIL(*why_not);
  state_->tally = &tally;
  state_->keep.reserve(keep.size());
  for (const auto& t : keep) {
    if (t.defined() && t.has_storage()) state_->keep.push_back(t.storage().unsafeGetStorageImpl());
  }
  std::sort(state_->keep.begin(), state_->keep.end());
  current_scope = state_.get();
}

ActivationOffloadScope::~ActivationOffloadScope() { current_scope = previous_; }

int64_t offloaded_tensors_total() { return copied_total.load(std::memory_order_relaxed); }

}  // namespace partita

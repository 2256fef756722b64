#pragma once
// The baseline partita must beat: plain LibTorch running the user's TorchScript module on this host, the way
// a PyTorch user would (module.forward; for training the same loss, backward and optimizer step), at a given
// thread configuration. LibTorch's default thread count is wrong on some VMs (1 on the 2-core machines), so
// the fair baseline is the best configuration of a sweep, and the sweep is reported.
#include <vector>

#include "partita/cost/memory.h"
#include "partita/runtime/loss.h"
#include "partita/search/search_options.h"
#include "partita/torch_bridge/model.h"

namespace partita {

struct ThreadConfig {
  int torch_threads = 1;          // LibTorch intra-op threads
  int blas_threads = -1;          // OpenBLAS pool size; -1: leave as is
  std::string to_string() const;  // "torch 2, blas 1"
};

struct BaselineOptions {
  Mode mode = Mode::kInference;
  Optimizer optimizer = Optimizer::kSgdMomentum;
  double learning_rate = 0.01;
  LossKind loss = LossKind::kAuto;
  int warmup = 2;
  int steps = 10;
};

struct BaselineResult {
  ThreadConfig config;
  std::vector<double> step_ms;
  double median_ms = 0;
};

// Times `options.steps` steps of the module on `inputs` (the global batch) at `config`. Training changes the
// module's weights: pass a model loaded for the purpose. Runs on a thread of its own that ends afterwards: an
// OpenMP team left behind by a multi-threaded run keeps spinning and would slow whatever runs next (measured
// here: a one-core engine worker went from 10.5 to 18 ms per GPT step next to an idle 2-thread team).
BaselineResult measure_torchscript(LoadedModel& model, const std::vector<torch::Tensor>& inputs,
                                   const ThreadConfig& config, const BaselineOptions& options);

// Every configuration worth trying on this host: torch threads 1..cores, each with OpenBLAS at 1 thread and
// at its default (when OpenBLAS is present).
std::vector<ThreadConfig> thread_configs();

}  // namespace partita

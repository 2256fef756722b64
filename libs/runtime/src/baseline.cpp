#include "partita/runtime/baseline.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include <torch/optim.h>
#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/core/own_thread.h"
#include "partita/graph/analysis.h"
#include "partita/runtime/blas_threads.h"
#include "partita/runtime/optimizer.h"
#include "partita/torch_bridge/timing.h"

namespace partita {

std::string ThreadConfig::to_string() const {
  return "torch " + std::to_string(torch_threads) +
         (blas_threads > 0 ? ", blas " + std::to_string(blas_threads) : std::string(", blas default"));
}

std::vector<ThreadConfig> thread_configs() {
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int blas_default = blas_threads();
  std::vector<ThreadConfig> configs;
  for (int t = 1; t <= cores; ++t) {
    configs.push_back({t, blas_default > 0 ? blas_default : -1});
    if (blas_default > 1) configs.push_back({t, 1});
  }
  return configs;
}

namespace {

BaselineResult measure_here(LoadedModel& model, const std::vector<torch::Tensor>& inputs,
                            const ThreadConfig& config, const BaselineOptions& options) {
  const int saved_blas = blas_threads();
  at::set_num_threads(config.torch_threads);
  if (config.blas_threads > 0) set_blas_threads(config.blas_threads);

  const bool training = options.mode == Mode::kTraining;
  // An input the model updates in place gets a fresh copy each step, as from a data loader (and as partita's
  // executor does): the same tensor would carry every step's writes into the next (x.div_(255) would reach
  // subnormal floats, which run several times slower).
  const std::vector<bool> written = inputs_written_in_place(model.ir);
  const bool copy_inputs = std::find(written.begin(), written.end(), true) != written.end();
  std::vector<c10::IValue> args(inputs.begin(), inputs.end());
  const auto refresh_inputs = [&] {
    for (size_t i = 0; i < args.size() && i < written.size(); ++i) {
      if (written[i]) args[i] = inputs[i].clone();
    }
  };
  std::vector<torch::Tensor> params;
  for (const auto& p : model.parameters) {
    if (p.requires_grad()) params.push_back(p);
  }
  torch::Tensor targets;
  LossKind kind = LossKind::kAuto;
  int64_t batch = 0;  // the loss's normalizer: the batch input's dim 0
  std::unique_ptr<torch::optim::Optimizer> opt;
  if (training) {
    const Graph& g = model.ir;
    const int carrier = g.batch_input_index();
    PARTITA_CHECK(carrier >= 0, "training needs a batched input; every input of the model is shared");
    const auto c = static_cast<size_t>(carrier);
    kind = resolve_loss(options.loss, *g.value(g.inputs()[c]).meta(), g.value(g.outputs()[0]).tensors.at(0));
    targets = make_targets(kind, inputs[c], g.value(g.outputs()[0]).tensors.at(0).shape, 12);
    batch = inputs[c].size(0);
    opt = make_optimizer(options.optimizer, params, options.learning_rate);
  }
  auto one_step = [&] {
    if (copy_inputs) refresh_inputs();
    if (!training) {
      torch::NoGradGuard no_grad;
      model.module.forward(args);
      return;
    }
    opt->zero_grad();
    auto out = model.module.forward(args);
    // The loss reads the first output: a tuple's first element, a dict's first value (load_model).
    const torch::Tensor o = out.isTuple()         ? out.toTupleRef().elements()[0].toTensor()
                            : out.isGenericDict() ? out.toGenericDict().begin()->value().toTensor()
                                                  : out.toTensor();
    slice_loss(kind, o, targets, batch).backward();
    opt->step();
  };
  BaselineResult result;
  result.config = config;
  for (int i = 0; i < options.warmup + options.steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    one_step();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= options.warmup) result.step_ms.push_back(ms);
  }
  result.median_ms = median_of(result.step_ms);
  if (saved_blas > 0) set_blas_threads(saved_blas);
  return result;
}

}  // namespace

BaselineResult measure_torchscript(LoadedModel& model, const std::vector<torch::Tensor>& inputs,
                                   const ThreadConfig& config, const BaselineOptions& options) {
  PARTITA_CHECK(!inputs.empty(), "baseline needs inputs");
  BaselineResult result;
  run_on_own_thread([&] { result = measure_here(model, inputs, config, options); });
  return result;
}

}  // namespace partita

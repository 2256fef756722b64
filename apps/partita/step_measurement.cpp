#include "step_measurement.h"

#include <torch/torch.h>

#include "partita/torch_bridge/memory_meter.h"

namespace partita::app {

namespace {

constexpr double kLearningRate = 1e-3;

void collect_float_outputs(const c10::IValue& v, std::vector<torch::Tensor>& out) {
  if (v.isTensor()) {
    if (v.toTensor().is_floating_point()) out.push_back(v.toTensor());
  } else if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) collect_float_outputs(e, out);
  } else if (v.isList()) {
    for (const auto& e : v.toListRef()) collect_float_outputs(e, out);
  }
}

void sgd_update(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  for (const auto& p : params) {
    if (!p.requires_grad() || !p.grad().defined()) continue;
    p.add_(p.grad(), -kLearningRate);
    p.mutable_grad().reset();  // set_to_none: the next backward allocates anew
  }
}

void train_step(const Executor& executor, const std::vector<c10::IValue>& inputs) {
  std::vector<torch::Tensor> outputs;
  for (const auto& v : executor.run(inputs)) collect_float_outputs(v, outputs);
  torch::Tensor loss;
  for (const auto& o : outputs) {
    if (!o.requires_grad()) continue;
    loss = loss.defined() ? loss + o.sum() : o.sum();
  }
  if (loss.defined()) loss.backward();
  sgd_update(executor.parameters());
}

}  // namespace

StepMeasurement measure_step(const Executor& executor, const std::vector<c10::IValue>& inputs, bool train,
                             const TimingOptions& timing) {
  auto step = [&] {
    if (train) {
      train_step(executor, inputs);
    } else {
      torch::NoGradGuard no_grad;
      (void)executor.run(inputs);
    }
  };
  StepMeasurement m;
  const TimingResult t = time_repeated(step, timing);
  m.median = t.median;
  m.min = t.min;
  m.repeats = t.repeats;
  if (MemoryMeter::installed()) {
    MemoryMeter& meter = MemoryMeter::install();
    meter.reset_peak();
    step();
    m.peak = meter.peak_bytes();
    m.peak_measured = true;
  }
  return m;
}

Seconds measure_update(const Executor& executor, const TimingOptions& timing) {
  std::vector<torch::Tensor> params;
  torch::NoGradGuard no_grad;
  for (const auto& p : executor.parameters()) {
    if (p.requires_grad()) params.push_back(p.detach().clone());
  }
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) grads.push_back(torch::randn_like(p));
  return time_repeated(
             [&] {
               for (size_t i = 0; i < params.size(); ++i) params[i].add_(grads[i], -kLearningRate);
             },
             timing)
      .median;
}

}  // namespace partita::app

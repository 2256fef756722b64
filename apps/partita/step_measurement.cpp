#include "step_measurement.h"

#include <algorithm>
#include <chrono>

#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/torch_bridge/memory_meter.h"

namespace partita::app {

// Copies of the parameters' values, written back into the same tensors by restore().
class ParameterSnapshot {
 public:
  explicit ParameterSnapshot(const std::vector<torch::Tensor>& params) : params_(params) {
    torch::NoGradGuard no_grad;
    for (const auto& p : params_) copies_.push_back(p.detach().clone());
  }
  void restore() const {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) params_[i].detach().copy_(copies_[i]);
  }

 private:
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> copies_;
};

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

void sgd_update(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  for (const auto& p : params) {
    if (!p.requires_grad() || !p.grad().defined()) continue;
    p.add_(p.grad(), -kLearningRate);
    p.mutable_grad().reset();  // set_to_none: the next backward allocates anew
  }
}

namespace {

// One step as measure_step runs it.
void run_step(const Executor& executor, const std::vector<c10::IValue>& inputs, bool train) {
  if (train) {
    train_step(executor, inputs);
  } else {
    torch::NoGradGuard no_grad;
    (void)executor.run(inputs);
  }
}

// Runs one step under the memory meter, when it is installed.
void measure_peak(const Executor& executor, const std::vector<c10::IValue>& inputs, bool train,
                  StepMeasurement& m) {
  if (!MemoryMeter::installed()) return;
  MemoryMeter& meter = MemoryMeter::install();
  meter.reset_peak();
  run_step(executor, inputs, train);
  m.peak = meter.peak_bytes();
  m.peak_measured = true;
}

}  // namespace

StepMeasurement measure_step(const Executor& executor, const std::vector<c10::IValue>& inputs, bool train,
                             const TimingOptions& timing) {
  StepMeasurement m;
  // The memory step first: the parameter snapshot below would count in the meter's peak.
  measure_peak(executor, inputs, train, m);
  // The loss (sum of the outputs) has no minimum, so repeated SGD steps on it diverge: on the zoo's CNN the
  // weights reached inf/NaN within a few steps, and arithmetic on NaN runs at another speed (its forward took
  // 0.35 ms instead of 0.62 ms at 2 threads). Every timed step therefore starts from the same weights
  // (restored outside the clock), as a user's steps on a sane model would, and as the profiler saw them.
  const ParameterSnapshot initial(train ? executor.parameters() : std::vector<torch::Tensor>{});
  const TimingResult t =
      time_repeated([&] { run_step(executor, inputs, train); }, timing, [&] { initial.restore(); });
  initial.restore();
  m.median = t.median;
  m.min = t.min;
  m.repeats = t.repeats;
  return m;
}

InterleavedSteps::InterleavedSteps(const Executor& executor, const std::vector<c10::IValue>& inputs,
                                   bool train)
    : executor_(executor),
      inputs_(inputs),
      train_(train),
      initial_(std::make_unique<ParameterSnapshot>(train ? executor.parameters()
                                                         : std::vector<torch::Tensor>{})) {}

InterleavedSteps::~InterleavedSteps() = default;

void InterleavedSteps::step(bool timed) {
  PARTITA_ASSERT(initial_ != nullptr, "InterleavedSteps::step after finish()");
  const auto t0 = std::chrono::steady_clock::now();
  run_step(executor_, inputs_, train_);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (timed) samples_.push_back(s);
  // Back to the values at construction, so the interleaved measurement sees the same weights.
  initial_->restore();
}

StepMeasurement InterleavedSteps::finish() {
  PARTITA_ASSERT(initial_ != nullptr, "InterleavedSteps::finish called twice");
  initial_->restore();
  initial_.reset();
  StepMeasurement m;
  measure_peak(executor_, inputs_, train_, m);
  if (!samples_.empty()) {
    m.median = Seconds(median_of(samples_));
    m.min = Seconds(*std::min_element(samples_.begin(), samples_.end()));
    m.repeats = static_cast<int>(samples_.size());
  }
  return m;
}

}  // namespace partita::app

#include "step_measurement.h"

#include <algorithm>
#include <chrono>

#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/runtime/loss.h"
#include "partita/runtime/optimizer.h"
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

// The first tensor of a model output (a tensor, or a tuple's or list's first), undefined when there is none.
torch::Tensor first_tensor(const c10::IValue& v) {
  if (v.isTensor()) return v.toTensor();
  if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) {
      if (torch::Tensor t = first_tensor(e); t.defined()) return t;
    }
  } else if (v.isList()) {
    for (const auto& e : v.toListRef()) {
      if (torch::Tensor t = first_tensor(e); t.defined()) return t;
    }
  }
  return {};
}

}  // namespace

TrainingStep::TrainingStep(const Executor& executor, const std::vector<c10::IValue>& inputs, LossKind loss,
                           Optimizer optimizer)
    : executor_(executor), loss_kind_(loss), optimizer_kind_(optimizer) {
  const Graph& g = executor.model().ir;
  const int carrier = g.batch_input_index();
  PARTITA_CHECK(carrier >= 0 && static_cast<size_t>(carrier) < inputs.size() &&
                    inputs[static_cast<size_t>(carrier)].isTensor(),
                "training needs a batched input; every input of the model is marked :shared");
  PARTITA_CHECK(!g.outputs().empty() && !g.value(g.outputs()[0]).tensors.empty(),
                "training needs a tensor model output to compute the loss from");
  const TensorMeta& output = g.value(g.outputs()[0]).tensors[0];
  const torch::Tensor batch_input = inputs[static_cast<size_t>(carrier)].toTensor();
  loss_kind_ = resolve_loss(loss, *g.value(g.inputs()[static_cast<size_t>(carrier)]).meta(), output);
  targets_ = make_targets(loss_kind_, batch_input, output.shape, /*seed=*/12).to(batch_input.device());
  normalizer_ = batch_input.size(0);
  std::vector<torch::Tensor> params;
  for (const auto& p : executor.parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  optimizer_ = make_optimizer(optimizer, params, default_learning_rate(optimizer));
}

TrainingStep::~TrainingStep() = default;

torch::Tensor TrainingStep::loss(const std::vector<c10::IValue>& outputs) const {
  const torch::Tensor out = outputs.empty() ? torch::Tensor() : first_tensor(outputs.front());
  PARTITA_CHECK(out.defined() && out.is_floating_point(), "training needs a floating-point model output");
  return slice_loss(loss_kind_, out, targets_, normalizer_);
}

void TrainingStep::update() {
  optimizer_->step();
  for (auto& group : optimizer_->param_groups()) {
    for (auto& p : group.params()) p.mutable_grad().reset();  // set to none: the next backward allocates anew
  }
}

void TrainingStep::run(const std::vector<c10::IValue>& inputs) {
  // The outputs go before backward, as in the engine: what autograd saved of them stays.
  const torch::Tensor l = loss(executor_.run(inputs));
  l.backward();
  update();
}

namespace {

// One step as measure_step runs it.
void run_step(const Executor& executor, const std::vector<c10::IValue>& inputs, TrainingStep* train) {
  if (train != nullptr) {
    train->run(inputs);
  } else {
    torch::NoGradGuard no_grad;
    (void)executor.run(inputs);
  }
}

// Runs one step under the memory meter, when it is installed (training: after one step that is not metered).
void measure_peak(const Executor& executor, const std::vector<c10::IValue>& inputs, TrainingStep* train,
                  StepMeasurement& m) {
  if (!MemoryMeter::installed()) return;
  MemoryMeter& meter = MemoryMeter::install();
  // Training: a step first, so the metered one holds what every later step holds: Adam's moments and SGD's
  // momentum are made in the first update, after its backward's peak (the first step of mobilenet_v2 with
  // Adam peaked 23 MiB under the next one).
  if (train != nullptr) run_step(executor, inputs, train);
  meter.reset_peak();
  run_step(executor, inputs, train);
  m.peak = meter.peak_bytes();
  m.peak_measured = true;
}

}  // namespace

StepMeasurement measure_step(const Executor& executor, const std::vector<c10::IValue>& inputs,
                             TrainingStep* train, const TimingOptions& timing) {
  StepMeasurement m;
  // The memory step first: the parameter snapshot below would count in the meter's peak.
  measure_peak(executor, inputs, train, m);
  // Every timed step starts from the same weights (restored outside the clock), as the profiler's in-situ
  // runs do: a few steps of the old loss (the sum of the outputs, which has no minimum) took the zoo's CNN to
  // inf/NaN weights, and arithmetic on NaN runs at another speed.
  const ParameterSnapshot initial(train != nullptr ? executor.parameters() : std::vector<torch::Tensor>{});
  const TimingResult t =
      time_repeated([&] { run_step(executor, inputs, train); }, timing, [&] { initial.restore(); });
  initial.restore();
  m.median = t.median;
  m.min = t.min;
  m.repeats = t.repeats;
  return m;
}

InterleavedSteps::InterleavedSteps(const Executor& executor, const std::vector<c10::IValue>& inputs,
                                   TrainingStep* train)
    : executor_(executor),
      inputs_(inputs),
      train_(train),
      initial_(std::make_unique<ParameterSnapshot>(train != nullptr ? executor.parameters()
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

#include "partita/cost/update.h"

#include <algorithm>
#include <numeric>

#include "partita/core/error.h"

namespace partita {

UpdateWork optimizer_update_work(Optimizer optimizer) {
  constexpr UpdateWork kZeroGrad{1, 1};
  UpdateWork w;
  switch (optimizer) {
    case Optimizer::kSgd:
      w = {3, 1};
      break;
    case Optimizer::kSgdMomentum:
      w = {8, 3};
      break;
    case Optimizer::kAdam:
      w = {21, 8};
      break;
    case Optimizer::kAdamW:
      w = {23, 9};
      break;
  }
  return {w.passes + kZeroGrad.passes, w.ops_per_tensor + kZeroGrad.ops_per_tensor};
}

Seconds optimizer_step_time(Bytes trainable, int tensors, Optimizer optimizer, const DeviceSpec& spec) {
  PARTITA_CHECK(tensors >= 0, "optimizer step over ", tensors, " tensors: the count cannot be negative");
  if (trainable.value() <= 0 || tensors == 0) return Seconds(0);
  PARTITA_CHECK(spec.memory_bandwidth.value() > 0, "device '", spec.name,
                "' has memory_bandwidth 0: add it to its profile to cost the optimizer step");
  const UpdateWork w = optimizer_update_work(optimizer);
  // A calibrated elementwise class (partita profile) knows its own fixed cost and sustained bandwidth.
  BytesPerSecond bandwidth = spec.memory_bandwidth;
  Seconds per_op = spec.op_overhead;
  const auto fit = spec.op_class_fits.find("elementwise");
  if (fit != spec.op_class_fits.end() && fit->second.bandwidth.value() > 0) {
    bandwidth = fit->second.bandwidth;
    per_op = fit->second.fixed;
  }
  return trainable * static_cast<double>(w.passes) / bandwidth +
         per_op * static_cast<double>(w.ops_per_tensor * tensors);
}

std::vector<int> split_update(const std::vector<Bytes>& tensors, const std::vector<double>& speeds) {
  PARTITA_CHECK(!speeds.empty(), "splitting an optimizer step needs at least one worker");
  for (double s : speeds) PARTITA_CHECK(s > 0, "an optimizer worker's speed must be positive, got ", s);
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return tensors[a].value() > tensors[b].value(); });
  std::vector<double> load(speeds.size(), 0.0);  // weight given to each worker so far
  std::vector<int> worker(tensors.size(), 0);
  for (size_t t : order) {
    const double bytes = static_cast<double>(tensors[t].value() + kCpuUpdateTensorBytes.value());
    size_t best = 0;
    for (size_t w = 1; w < speeds.size(); ++w) {
      if ((load[w] + bytes) / speeds[w] < (load[best] + bytes) / speeds[best]) best = w;
    }
    load[best] += bytes;
    worker[t] = static_cast<int>(best);
  }
  return worker;
}

}  // namespace partita

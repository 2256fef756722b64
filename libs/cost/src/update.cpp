#include "partita/cost/update.h"

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

}  // namespace partita

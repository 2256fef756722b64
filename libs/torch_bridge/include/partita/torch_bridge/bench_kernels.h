#pragma once
// The microbenchmark kernels, one measurement each, on one torch device at the current intra-op thread
// count. Rates count useful work: GEMM 2 n^3 FLOP; conv 2 N K Ho Wo C R S FLOP; bandwidth counts bytes read
// plus bytes written. The caller chooses threads (at::set_num_threads) and timing; kernels synchronize CUDA
// inside the timed region so GPU figures are real.
#include <functional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "partita/core/units.h"
#include "partita/graph/tensor_meta.h"
#include "partita/torch_bridge/timing.h"

namespace partita {

// n x n times n x n. Throws partita::Error when the device cannot multiply that dtype (callers catch it to
// say "bf16 not supported").
FlopsPerSecond gemm_rate(int64_t n, DType dtype, const torch::Device& device, const TimingOptions& timing);

// A ResNet-like 3x3 convolution: batch 8, 64 -> 64 channels, 28 x 28, padding 1, f32.
FlopsPerSecond conv_rate(const torch::Device& device, const TimingOptions& timing);

// dst.copy_(src) of `bytes` bytes of f32: 2 x bytes per run.
BytesPerSecond copy_rate(Bytes bytes, const torch::Device& device, const TimingOptions& timing);

// at::add_out(c, a, b) on tensors of `bytes` bytes each: 3 x bytes per run.
BytesPerSecond add_rate(Bytes bytes, const torch::Device& device, const TimingOptions& timing);

// Time of one tiny op (add of two 1-element tensors). Boxed: through c10's dispatcher with an IValue stack,
// as partita's executor runs ops; direct: the C++ API (at::add).
Seconds tiny_op_time(bool boxed, const TimingOptions& timing);

// A generic op of one calibration class (cost/compute.h's calibration_class names) at one size: `call` makes
// one call on a set of operands from `make_inputs` the way a model's forward does (a fresh output unless the
// op is in place); flops and bytes (read + written) are counted as the graph library counts that op
// (graph/op_cost.h), so a fit to these samples predicts the graph's nodes. The sizes are generic — tiny ones
// where the fixed cost dominates, larger ones where the rate does, activation-heavy and weight-heavy ones
// (a deep layer's megabytes of weights on a few pixels) — never the ops of a particular model.
struct ClassKernel {
  std::string op_class;  // "matmul", "conv", "grouped_conv", "norm", "elementwise", "reduction", "pool",
                         // "memory", "recurrent"
  std::string label;     // "linear 64x256->256"
  Flops flops{0};
  Bytes bytes{0};
  // Kernels one call launches (OpCost::kernel_calls): 1, or a recurrent layer's count over its steps. The
  // profile records such a kernel per call of one kernel (time, FLOPs and bytes divided by it), which is how
  // the cost model applies the class's fit.
  int64_t kernel_calls = 1;
  std::function<std::vector<torch::Tensor>()> make_inputs;  // fresh random operands (CPU, f32)
  std::function<torch::Tensor(const std::vector<torch::Tensor>&)> call;
  std::vector<size_t>
      trainable;  // operands that get gradients when the backward is timed; empty: no backward
};

// The calibration set: a few sizes per class; `quick` keeps fewer (tests, PARTITA_PROFILE_QUICK).
std::vector<ClassKernel> class_kernels(bool quick);

// Median seconds per call of a kernel's forward (no autograd) and, when asked and it has trainable operands,
// its backward (forward + backward with autograd minus the recorded forward; gradients reset to none each
// time); backward is 0 otherwise. Operands rotate over as many sets as fit in `cold_bytes` (at most 256), so
// they come from memory rather than cache; calls are timed in batches of ~20 us so the clock does not count.
struct ClassKernelTimes {
  Seconds forward{0};
  Seconds backward{0};
};
ClassKernelTimes time_class_kernel(const ClassKernel& kernel, const TimingOptions& timing, Bytes cold_bytes,
                                   bool backward);

// Host <-> device copy of `bytes` (pinned host memory when available): seconds per copy.
Seconds host_device_copy_time(Bytes bytes, bool to_device, int cuda_index, const TimingOptions& timing);

}  // namespace partita

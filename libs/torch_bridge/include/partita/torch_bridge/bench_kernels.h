#pragma once
// The microbenchmark kernels, one measurement each, on one torch device at the current intra-op thread
// count. Rates count useful work: GEMM 2 n^3 FLOP; conv 2 N K Ho Wo C R S FLOP; bandwidth counts bytes read
// plus bytes written. The caller chooses threads (at::set_num_threads) and timing; kernels synchronize CUDA
// inside the timed region so GPU figures are real.
#include <string>

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

// Host <-> device copy of `bytes` (pinned host memory when available): seconds per copy.
Seconds host_device_copy_time(Bytes bytes, bool to_device, int cuda_index, const TimingOptions& timing);

}  // namespace partita

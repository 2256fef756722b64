#include "partita/torch_bridge/bench_kernels.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/torch_bridge/dtype.h"
#include "partita/torch_bridge/model.h"

namespace partita {

namespace {

TimingOptions with_sync(TimingOptions timing, const torch::Device& device) {
  if (device.is_cuda()) timing.sync = [] { torch::cuda::synchronize(); };
  return timing;
}

}  // namespace

FlopsPerSecond gemm_rate(int64_t n, DType dtype, const torch::Device& device, const TimingOptions& timing) {
  PARTITA_CHECK(n > 0, "GEMM size ", n, " must be positive");
  const auto opts = torch::TensorOptions().dtype(to_torch(dtype)).device(device);
  const torch::Tensor a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
  torch::Tensor c = torch::empty({n, n}, opts);
  torch::NoGradGuard no_grad;
  try {
    at::mm_out(c, a, b);
  } catch (const std::exception& e) {
    PARTITA_FAIL("matmul in ", dtype_name(dtype), " on ", device.str(), " is not supported: ", first_line(e));
  }
  const TimingResult t = time_repeated([&] { at::mm_out(c, a, b); }, with_sync(timing, device));
  return FlopsPerSecond(2.0 * static_cast<double>(n) * n * n / t.median.value());
}

FlopsPerSecond conv_rate(const torch::Device& device, const TimingOptions& timing) {
  constexpr int64_t kN = 8, kC = 64, kK = 64, kH = 28, kR = 3;
  const auto opts = torch::TensorOptions().device(device);
  const torch::Tensor x = torch::randn({kN, kC, kH, kH}, opts), w = torch::randn({kK, kC, kR, kR}, opts);
  torch::NoGradGuard no_grad;
  const TimingResult t = time_repeated([&] { (void)at::conv2d(x, w, {}, /*stride=*/1, /*padding=*/1); },
                                       with_sync(timing, device));
  const double flops = 2.0 * kN * kK * kH * kH * kC * kR * kR;
  return FlopsPerSecond(flops / t.median.value());
}

BytesPerSecond copy_rate(Bytes bytes, const torch::Device& device, const TimingOptions& timing) {
  const int64_t n = bytes.value() / 4;
  const auto opts = torch::TensorOptions().device(device);
  const torch::Tensor src = torch::randn({n}, opts);
  torch::Tensor dst = torch::empty({n}, opts);
  const TimingResult t = time_repeated([&] { dst.copy_(src); }, with_sync(timing, device));
  return BytesPerSecond(2.0 * static_cast<double>(n) * 4 / t.median.value());
}

BytesPerSecond add_rate(Bytes bytes, const torch::Device& device, const TimingOptions& timing) {
  const int64_t n = bytes.value() / 4;
  const auto opts = torch::TensorOptions().device(device);
  const torch::Tensor a = torch::randn({n}, opts), b = torch::randn({n}, opts);
  torch::Tensor c = torch::empty({n}, opts);
  const TimingResult t = time_repeated([&] { at::add_out(c, a, b); }, with_sync(timing, device));
  return BytesPerSecond(3.0 * static_cast<double>(n) * 4 / t.median.value());
}

Seconds tiny_op_time(bool boxed, const TimingOptions& timing) {
  const torch::Tensor a = torch::ones({1}), b = torch::ones({1});
  torch::NoGradGuard no_grad;
  constexpr int kBatch = 200;  // one clock read per 200 ops: the clock costs about as much as the op
  TimingResult t;
  if (boxed) {
    const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("aten::add", "Tensor");
    torch::jit::Stack stack;
    t = time_repeated(
        [&] {
          for (int i = 0; i < kBatch; ++i) {
            stack.clear();
            stack.emplace_back(a);
            stack.emplace_back(b);
            stack.emplace_back(1);
            op.callBoxed(&stack);
          }
        },
        timing);
  } else {
    t = time_repeated(
        [&] {
          for (int i = 0; i < kBatch; ++i) (void)at::add(a, b);
        },
        timing);
  }
  return t.median / kBatch;
}

Seconds host_device_copy_time(Bytes bytes, bool to_device, int cuda_index, const TimingOptions& timing) {
  const torch::Device gpu(torch::kCUDA, static_cast<c10::DeviceIndex>(cuda_index));
  const int64_t n = std::max<int64_t>(1, bytes.value());
  torch::Tensor host = torch::empty({n}, torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(true));
  torch::Tensor dev = torch::empty({n}, torch::TensorOptions().dtype(torch::kUInt8).device(gpu));
  const TimingResult t = time_repeated(
      [&] {
        if (to_device) {
          dev.copy_(host, /*non_blocking=*/false);
        } else {
          host.copy_(dev, /*non_blocking=*/false);
        }
      },
      with_sync(timing, gpu));
  return t.median;
}

}  // namespace partita

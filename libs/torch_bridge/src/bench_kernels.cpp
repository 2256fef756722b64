#include "partita/torch_bridge/bench_kernels.h"

#include <algorithm>
#include <chrono>

#include <ATen/core/dispatch/Dispatcher.h>
#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/graph/op_cost.h"
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

namespace partita {

namespace {

using Inputs = std::vector<torch::Tensor>;

Bytes nbytes(const Inputs& tensors) {
  int64_t total = 0;
  for (const auto& t : tensors) total += static_cast<int64_t>(t.nbytes());
  return Bytes(total);
}

double elements(const torch::Tensor& t) { return static_cast<double>(t.numel()); }

torch::Tensor randn(at::IntArrayRef shape) { return torch::randn(shape); }

// A kernel whose work is counted from one sample set of inputs and its output: bytes = inputs + output (the
// graph library's rule: every tensor argument is read once, every output written once).
ClassKernel make(std::string op_class, std::string label, std::function<Inputs()> make_inputs,
                 std::function<torch::Tensor(const Inputs&)> call,
                 const std::function<double(const Inputs&, const torch::Tensor&)>& flops,
                 std::vector<size_t> trainable) {
  torch::NoGradGuard no_grad;
  const Inputs sample = make_inputs();
  const torch::Tensor out = call(sample);
  ClassKernel k;
  k.op_class = std::move(op_class);
  k.label = std::move(label);
  k.flops = Flops(flops(sample, out));
  k.bytes = nbytes(sample) + Bytes(static_cast<int64_t>(out.nbytes()));
  k.make_inputs = std::move(make_inputs);
  k.call = std::move(call);
  k.trainable = std::move(trainable);
  return k;
}

struct LinearSize {
  int64_t m, k, n;
};
struct ConvSize {
  int64_t batch, in, size, out, kernel, stride, groups;
};

void add_matmul(std::vector<ClassKernel>& out, const LinearSize& s) {
  out.push_back(make(
      "matmul", fmt::format("linear {}x{}->{}", s.m, s.k, s.n),
      [=] {
        return Inputs{randn({s.m, s.k}), randn({s.n, s.k}), randn({s.n})};
      },
      [](const Inputs& in) { return at::linear(in[0], in[1], in[2]); },
      [=](const Inputs&, const torch::Tensor& y) {
        return 2 * elements(y) * static_cast<double>(s.k) + elements(y);
      },
      {0, 1, 2}));
}

void add_bmm(std::vector<ClassKernel>& out, int64_t batch, int64_t m, int64_t k, int64_t n) {
  out.push_back(make(
      "matmul", fmt::format("matmul {}x{}x{}x{}", batch, m, k, n),
      [=] {
        return Inputs{randn({batch, m, k}), randn({batch, k, n})};
      },
      [](const Inputs& in) { return at::matmul(in[0], in[1]); },
      [=](const Inputs&, const torch::Tensor& y) { return 2 * elements(y) * static_cast<double>(k); },
      {0, 1}));
}

void add_conv(std::vector<ClassKernel>& out, const ConvSize& s) {
  const int64_t pad = s.kernel / 2;
  out.push_back(make(
      s.groups > 1 ? "grouped_conv" : "conv",
      fmt::format("conv {}x{}x{}x{} k{} s{} g{} ->{}", s.batch, s.in, s.size, s.size, s.kernel, s.stride,
                  s.groups, s.out),
      [=] {
        return Inputs{randn({s.batch, s.in, s.size, s.size}),
                      randn({s.out, s.in / s.groups, s.kernel, s.kernel})};
      },
      [=](const Inputs& in) { return at::conv2d(in[0], in[1], {}, s.stride, pad, 1, s.groups); },
      [](const Inputs& in, const torch::Tensor& y) {
        return 2 * elements(y) * static_cast<double>(in[1].numel() / in[1].size(0));
      },
      {0, 1}));
}

void add_batch_norm(std::vector<ClassKernel>& out, int64_t n, int64_t c, int64_t hw) {
  // Eval-mode statistics (running mean and variance), as traced inference models run it.
  out.push_back(make(
      "norm", fmt::format("batch_norm {}x{}x{}x{}", n, c, hw, hw),
      [=] {
        return Inputs{randn({n, c, hw, hw}), randn({c}), randn({c}), randn({c}), torch::rand({c}) + 1};
      },
      [](const Inputs& in) {
        return at::batch_norm(in[0], in[1], in[2], in[3], in[4], false, 0.1, 1e-5, true);
      },
      [](const Inputs&, const torch::Tensor& y) { return 4 * elements(y); }, {0, 1, 2}));
}

void add_layer_norm(std::vector<ClassKernel>& out, int64_t rows, int64_t width) {
  out.push_back(make(
      "norm", fmt::format("layer_norm {}x{}", rows, width),
      [=] {
        return Inputs{randn({rows, width}), randn({width}), randn({width})};
      },
      [=](const Inputs& in) { return at::layer_norm(in[0], {width}, in[1], in[2], 1e-5, true); },
      [](const Inputs&, const torch::Tensor& y) { return 8 * elements(y); }, {0, 1, 2}));
}

void add_elementwise(std::vector<ClassKernel>& out, const std::string& op, int64_t n) {
  const std::string label = fmt::format("{} {}", op, n);
  const auto one = [n] { return Inputs{randn({n})}; };
  const auto per_element = [](double f) {
    return [f](const Inputs&, const torch::Tensor& y) { return f * elements(y); };
  };
  if (op == "relu") {
    out.push_back(make("elementwise", label, one, [](const Inputs& in) { return at::relu(in[0]); },
                       per_element(1), {0}));
  } else if (op == "relu_") {  // in place, as traced models run relu_/hardtanh_; no backward on a leaf
    out.push_back(
        make("elementwise", label, one, [](const Inputs& in) { return in[0].relu_(); }, per_element(1), {}));
  } else if (op == "add") {
    out.push_back(make(
        "elementwise", label,
        [n] {
          return Inputs{randn({n}), randn({n})};
        },
        [](const Inputs& in) { return at::add(in[0], in[1]); }, per_element(1), {0, 1}));
  } else {
    PARTITA_ASSERT(op == "gelu", "unknown calibration op ", op);
    out.push_back(make("elementwise", label, one, [](const Inputs& in) { return at::gelu(in[0]); },
                       per_element(8), {0}));
  }
}

void add_softmax(std::vector<ClassKernel>& out, int64_t rows, int64_t width) {
  out.push_back(make(
      "reduction", fmt::format("softmax {}x{}", rows, width),
      [=] {
        return Inputs{randn({rows, width})};
      },
      [](const Inputs& in) { return at::softmax(in[0], -1); },
      [](const Inputs&, const torch::Tensor& y) { return 5 * elements(y); }, {0}));
}

void add_max_pool(std::vector<ClassKernel>& out, int64_t n, int64_t c, int64_t hw, int64_t k,
                  int64_t stride) {
  const int64_t pad = k % 2 == 1 ? k / 2 : 0;  // "same"-style padding for odd windows, none for even ones
  out.push_back(make(
      "pool", fmt::format("max_pool2d {}x{}x{}x{} k{} s{}", n, c, hw, hw, k, stride),
      [=] {
        return Inputs{randn({n, c, hw, hw})};
      },
      [=](const Inputs& in) {
        return at::max_pool2d(in[0], {k, k}, {stride, stride}, {pad, pad});
      },
      [=](const Inputs&, const torch::Tensor& y) { return elements(y) * static_cast<double>(k * k); }, {0}));
}

void add_mean_pool(std::vector<ClassKernel>& out, int64_t n, int64_t c, int64_t hw) {
  out.push_back(make(
      "reduction", fmt::format("adaptive_avg_pool2d {}x{}x{}x{}", n, c, hw, hw),
      [=] {
        return Inputs{randn({n, c, hw, hw})};
      },
      [](const Inputs& in) {
        return at::adaptive_avg_pool2d(in[0], {1, 1});
      },
      [](const Inputs& in, const torch::Tensor&) { return elements(in[0]); }, {0}));
}

void add_cat(std::vector<ClassKernel>& out, int parts, int64_t n, int64_t c, int64_t hw) {
  std::vector<size_t> all(static_cast<size_t>(parts));
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  out.push_back(make(
      "memory", fmt::format("cat {}x {}x{}x{}x{}", parts, n, c, hw, hw),
      [=] {
        Inputs xs;
        for (int i = 0; i < parts; ++i) xs.push_back(randn({n, c, hw, hw}));
        return xs;
      },
      [](const Inputs& in) { return at::cat(in, 1); },
      [](const Inputs&, const torch::Tensor&) { return 0.0; }, all));
}

void add_contiguous(std::vector<ClassKernel>& out, int64_t b, int64_t l, int64_t h, int64_t d) {
  out.push_back(make(
      "memory", fmt::format("contiguous {}x{}x{}x{}^T", b, h, l, d),
      [=] {
        return Inputs{randn({b, l, h, d})};
      },
      [](const Inputs& in) { return in[0].transpose(1, 2).contiguous(); },
      [](const Inputs&, const torch::Tensor&) { return 0.0; }, {0}));
}

void add_embedding(std::vector<ClassKernel>& out, int64_t rows, int64_t width, int64_t lookups) {
  ClassKernel k = make(
      "memory", fmt::format("embedding {}x{} [{}]", rows, width, lookups),
      [=] {
        return Inputs{torch::randint(rows, {lookups}, torch::kLong), randn({rows, width})};
      },
      [](const Inputs& in) { return at::embedding(in[1], in[0]); },
      [](const Inputs&, const torch::Tensor&) { return 0.0; }, {1});
  // The graph counts the indices and the gathered rows read, not the whole table.
  k.bytes = Bytes(lookups * 8) + Bytes(lookups * width * 4) * 2.0;
  out.push_back(std::move(k));
}

// Runs `fn(i)` for i = 0, 1, ... in timed batches of about 20 us (one clock read per batch); median per call.
Seconds per_call(const std::function<void(size_t)>& fn, const TimingOptions& timing) {
  using Clock = std::chrono::steady_clock;
  size_t i = 0;
  fn(i++);  // first call: allocations, primitive creation
  const auto t0 = Clock::now();
  fn(i++);
  const double once = std::chrono::duration<double>(Clock::now() - t0).count();
  const int batch = static_cast<int>(std::clamp(20e-6 / std::max(once, 1e-9), 1.0, 256.0));
  const TimingResult t = time_repeated(
      [&] {
        for (int b = 0; b < batch; ++b) fn(i++);
      },
      timing);
  return t.median / batch;
}

// One LSTM layer over `steps` steps of [batch, features] into `hidden` units, as nn.LSTM runs it. FLOPs as
// the graph library counts them (op_cost_compute.cpp): per token the two linears with their biases, the add
// of the input and hidden gate pre-activations, and 24 per hidden unit of cell math. Only LSTMs calibrate
// the class: GRU and Elman samples beside them made no prediction better (docs/status.md).
void add_lstm(std::vector<ClassKernel>& out, int64_t steps, int64_t batch, int64_t features, int64_t hidden) {
  const int64_t gates = 4 * hidden;
  ClassKernel k = make(
      "recurrent", fmt::format("lstm {}x{}x{}->{}", steps, batch, features, hidden),
      [=] {
        return Inputs{randn({steps, batch, features}),
                      torch::zeros({1, batch, hidden}),
                      torch::zeros({1, batch, hidden}),
                      randn({gates, features}),
                      randn({gates, hidden}),
                      randn({gates}),
                      randn({gates})};
      },
      [](const Inputs& in) {
        return std::get<0>(at::lstm(in[0], {in[1], in[2]}, {in[3], in[4], in[5], in[6]}, /*has_biases=*/true,
                                    /*num_layers=*/1, /*dropout=*/0.0, /*train=*/true,
                                    /*bidirectional=*/false,
                                    /*batch_first=*/false));
      },
      [=](const Inputs&, const torch::Tensor&) {
        const double per_token = 2.0 * gates * (features + hidden) + 2.0 * gates + gates + 24.0 * hidden;
        return static_cast<double>(steps * batch) * per_token;
      },
      {3, 4, 5, 6});
  k.kernel_calls = recurrent_kernel_calls("aten::lstm", steps, 1);
  out.push_back(std::move(k));
}

}  // namespace

std::vector<ClassKernel> class_kernels(bool quick) {
  std::vector<ClassKernel> k;
  const std::vector<LinearSize> linears =
      quick ? std::vector<LinearSize>{{4, 32, 32}, {64, 256, 256}, {256, 512, 1024}}
            : std::vector<LinearSize>{{4, 32, 32},      {16, 128, 128},   {64, 256, 256}, {128, 512, 512},
                                      {256, 512, 1024}, {512, 1024, 256}, {4, 1024, 2048}};
  for (const auto& s : linears) add_matmul(k, s);
  add_bmm(k, 16, 64, 64, 64);
  if (!quick) add_bmm(k, 32, 128, 64, 128);
  std::vector<ConvSize> convs{{1, 8, 16, 16, 3, 1, 1}, {8, 64, 28, 64, 3, 1, 1}, {4, 32, 28, 64, 1, 1, 1}};
  if (!quick) {
    convs.insert(convs.end(), {{2, 16, 32, 32, 3, 1, 1},
                               {2, 3, 64, 16, 3, 2, 1},
                               {4, 128, 14, 128, 3, 1, 1},
                               {2, 256, 7, 512, 1, 1, 1},
                               {1, 32, 14, 32, 5, 1, 1},
                               {1, 384, 6, 384, 3, 1, 1}});
  }
  std::vector<ConvSize> grouped{
      {1, 16, 16, 16, 3, 1, 16}, {2, 32, 56, 32, 3, 1, 32}, {8, 256, 14, 256, 3, 1, 256}};
  if (!quick) {
    grouped.insert(grouped.end(),
                   {{4, 128, 28, 128, 3, 2, 128}, {4, 64, 28, 64, 3, 1, 4}, {2, 64, 14, 64, 5, 1, 64}});
  }
  for (const auto& s : convs) add_conv(k, s);
  for (const auto& s : grouped) add_conv(k, s);
  add_batch_norm(k, 1, 8, 8);
  add_batch_norm(k, 8, 64, 32);
  add_layer_norm(k, 256, 256);
  if (!quick) {
    add_batch_norm(k, 4, 32, 28);
    add_batch_norm(k, 2, 256, 7);
    add_layer_norm(k, 16, 64);
    add_layer_norm(k, 1024, 512);
  }
  const std::vector<int64_t> sizes =
      quick ? std::vector<int64_t>{256, 65536, 2 << 20} : std::vector<int64_t>{256, 16384, 262144, 2 << 20};
  for (int64_t n : sizes) add_elementwise(k, "relu", n);
  add_elementwise(k, "add", quick ? 65536 : 1 << 20);
  if (!quick) {
    add_elementwise(k, "relu_", 4096);
    add_elementwise(k, "relu_", 1 << 20);
    add_elementwise(k, "add", 1024);
    add_elementwise(k, "gelu", 262144);
  }
  add_softmax(k, 8, 64);
  add_softmax(k, 512, 256);
  add_mean_pool(k, 8, 256, 7);
  add_max_pool(k, 1, 8, 8, 2, 2);
  add_max_pool(k, 2, 32, 56, 3, 2);
  if (!quick) {
    add_softmax(k, 2048, 512);
    add_mean_pool(k, 1, 16, 8);
    add_max_pool(k, 8, 16, 32, 2, 2);
    add_max_pool(k, 4, 64, 28, 3, 1);
  }
  add_cat(k, 2, 1, 16, 8);
  add_cat(k, 2, 4, 32, 28);
  add_contiguous(k, 4, 128, 4, 64);
  if (!quick) {
    add_cat(k, 4, 8, 32, 32);
    add_contiguous(k, 1, 16, 2, 16);
    add_embedding(k, 4096, 256, 512);
  }
  // Recurrent layers: the steps set the calls (the fixed part), the widths the GEMMs.
  add_lstm(k, 4, 8, 32, 32);
  add_lstm(k, 16, 8, 32, 32);
  add_lstm(k, 8, 16, 128, 256);
  if (!quick) {
    add_lstm(k, 32, 4, 16, 16);
    add_lstm(k, 8, 32, 256, 512);
  }
  return k;
}

ClassKernelTimes time_class_kernel(const ClassKernel& kernel, const TimingOptions& timing, Bytes cold_bytes,
                                   bool backward) {
  // Rotate over enough operand sets to exceed the caches, so every op reads its operands from memory as the
  // roofline assumes (and as a model's weights come); tiny ops stop at 256 sets and stay cached.
  const Inputs first = kernel.make_inputs();
  const int64_t set_bytes = std::max<int64_t>(1, nbytes(first).value());
  const auto copies = static_cast<size_t>(std::clamp<int64_t>(cold_bytes.value() / set_bytes, 1, 256));
  std::vector<Inputs> sets{first};
  while (sets.size() < copies) sets.push_back(kernel.make_inputs());
  ClassKernelTimes out;
  {
    torch::NoGradGuard no_grad;
    out.forward = per_call([&](size_t i) { (void)kernel.call(sets[i % copies]); }, timing);
  }
  if (!backward || kernel.trainable.empty()) return out;
  for (auto& set : sets) {
    for (size_t t : kernel.trainable) set[t].requires_grad_(true);
  }
  const torch::Tensor grad = torch::ones_like(kernel.call(sets[0]).detach());
  // Forward with autograd recording (as in a training step) and forward + backward; the difference is the
  // backward. Gradients are reset to none after each backward, as the training step's update does.
  const Seconds recorded = per_call([&](size_t i) { (void)kernel.call(sets[i % copies]); }, timing);
  const Seconds both = per_call(
      [&](size_t i) {
        const Inputs& set = sets[i % copies];
        kernel.call(set).backward(grad);
        for (size_t t : kernel.trainable) set[t].mutable_grad().reset();
      },
      timing);
  out.backward = Seconds(std::max(0.0, (both - recorded).value()));
  return out;
}

}  // namespace partita

#include "partita/torch_bridge/microbench.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>

#include <fmt/format.h>
#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/core/log.h"
#include "partita/cost/link_fit.h"
#include "partita/cost/op_class_fit.h"
#include "partita/hardware/cpu_spec.h"
#include "partita/torch_bridge/bench_kernels.h"
#include "partita/torch_bridge/cuda_devices.h"
#include "partita/torch_bridge/machine_fingerprint.h"
#include "partita/torch_bridge/model.h"

namespace partita {

namespace {

struct Plan {
  TimingOptions timing;
  int64_t scaling_gemm_n;
  std::vector<int64_t> gemm_sizes;
  Bytes bandwidth_bytes;
  int64_t gpu_gemm_n;
  TimingOptions class_timing;  // per calibration kernel and thread count
};

Plan plan_for(ProfileMode mode) {
  Plan p;
  if (mode == ProfileMode::kQuick) {
    p.timing = TimingOptions{1, 2, 10, Seconds(0.04), {}};
    p.scaling_gemm_n = 256;
    p.gemm_sizes = {128, 256};
    p.bandwidth_bytes = Bytes(16 << 20);
    p.gpu_gemm_n = 2048;
    p.class_timing = TimingOptions{1, 3, 15, Seconds(0.004), {}};
  } else {
    p.timing = TimingOptions{2, 5, 200, Seconds(0.6), {}};
    p.scaling_gemm_n = 512;
    p.gemm_sizes = {128, 256, 512, 1024};
    p.bandwidth_bytes = Bytes(128 << 20);  // far beyond any last-level cache
    p.gpu_gemm_n = 8192;
    p.class_timing = TimingOptions{2, 7, 60, Seconds(0.05), {}};
  }
  return p;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

struct ThreadGuard {
  int saved = at::get_num_threads();
  ~ThreadGuard() { at::set_num_threads(saved); }
};

template <typename Rate>
int best_threads(const std::vector<ThreadScalingSample>& s, Rate ThreadScalingSample::*field) {
  const auto it = std::max_element(s.begin(), s.end(),
                                   [&](const auto& a, const auto& b) { return (a.*field) < (b.*field); });
  return it == s.end() ? 1 : it->threads;
}

// Generic ops of every calibration class at every thread count; the cost library fits them per class
// (cpu_spec_at_threads). Interleaved by kernel, not by thread count, so a slow spell of a shared machine
// spreads over the counts instead of biasing one.
void measure_op_classes(const Plan& plan, bool quick, int max_threads, Bytes cold_bytes, MachineProfile& p) {
  const std::vector<ClassKernel> kernels = class_kernels(quick);
  for (const auto& k : kernels) {
    for (int t = 1; t <= max_threads; ++t) {
      at::set_num_threads(t);
      const ClassKernelTimes times = time_class_kernel(k, plan.class_timing, cold_bytes, /*backward=*/true);
      // Per kernel call, as the cost model applies the fit (see ClassKernel::kernel_calls).
      const double calls = static_cast<double>(k.kernel_calls);
      const std::string label =
          k.kernel_calls == 1 ? k.label : fmt::format("{} (per call of {})", k.label, k.kernel_calls);
      p.op_class_samples.push_back(OpClassSample{k.op_class, label, t, Flops(k.flops.value() / calls),
                                                 Bytes(static_cast<int64_t>(k.bytes.value() / calls)),
                                                 times.forward / calls, times.backward / calls});
    }
  }
  for (int t = 1; t <= max_threads; ++t) {
    for (const FitPass pass : {FitPass::kForward, FitPass::kBackward}) {
      for (const auto& [name, fit] : fit_op_classes(p.op_class_samples, t, pass)) {
        log_info(fmt::format(
            "  {} thread(s) {:<12} {}: fixed {:6.2f} us, {:7.1f} GFLOP/s, {:6.1f} GB/s ({} samples, "
            "rms error {:.0f}%){}",
            t, name, pass == FitPass::kForward ? "forward " : "backward", fit.fixed.value() * 1e6,
            fit.flops_rate.value() / 1e9, fit.bandwidth.value() / 1e9, fit.samples,
            fit.rms_relative_error * 100, fit.additive ? ", additive" : ""));
      }
    }
  }
}

void measure_cpu(const Plan& plan, int max_threads, MachineProfile& p) {
  const torch::Device cpu(torch::kCPU);
  for (int t = 1; t <= max_threads; ++t) {
    at::set_num_threads(t);
    ThreadScalingSample s;
    s.threads = t;
    s.matmul = gemm_rate(plan.scaling_gemm_n, DType::kFloat32, cpu, plan.timing);
    s.conv = conv_rate(cpu, plan.timing);
    s.elementwise = add_rate(plan.bandwidth_bytes, cpu, plan.timing);
    log_info(fmt::format("  {} thread(s): matmul {:.1f} GFLOP/s, conv {:.1f} GFLOP/s, add {:.1f} GB/s", t,
                         s.matmul.value() / 1e9, s.conv.value() / 1e9, s.elementwise.value() / 1e9));
    p.thread_scaling.push_back(s);
  }
  p.best_matmul_threads = best_threads(p.thread_scaling, &ThreadScalingSample::matmul);
  p.best_conv_threads = best_threads(p.thread_scaling, &ThreadScalingSample::conv);
  p.best_elementwise_threads = best_threads(p.thread_scaling, &ThreadScalingSample::elementwise);
  p.conv_rate = p.thread_scaling[static_cast<size_t>(p.best_conv_threads - 1)].conv;

  at::set_num_threads(p.best_matmul_threads);
  for (int64_t n : plan.gemm_sizes) {
    p.gemm.push_back(
        {"cpu", n, DType::kFloat32, p.best_matmul_threads, gemm_rate(n, DType::kFloat32, cpu, plan.timing)});
  }
  try {
    const int64_t n = plan.scaling_gemm_n;
    p.gemm.push_back({"cpu", n, DType::kBFloat16, p.best_matmul_threads,
                      gemm_rate(n, DType::kBFloat16, cpu, plan.timing)});
  } catch (const Error& e) {
    p.notes.push_back(std::string("cpu bf16 GEMM: ") + e.what());
  }
  for (const auto& g : p.gemm) {
    log_info(fmt::format("  GEMM {} n={} at {} thread(s): {:.1f} GFLOP/s", dtype_name(g.dtype), g.n,
                         g.threads, g.rate.value() / 1e9));
  }
  at::set_num_threads(p.best_elementwise_threads);
  p.copy_bandwidth = copy_rate(plan.bandwidth_bytes, cpu, plan.timing);
  p.add_bandwidth = add_rate(plan.bandwidth_bytes, cpu, plan.timing);
  at::set_num_threads(1);
  p.op_overhead_direct = tiny_op_time(false, plan.timing);
  p.op_overhead_boxed = tiny_op_time(true, plan.timing);
  log_info(fmt::format("  bandwidth: copy {:.1f} GB/s, add {:.1f} GB/s; tiny op {:.2f} us (boxed {:.2f} us)",
                       p.copy_bandwidth.value() / 1e9, p.add_bandwidth.value() / 1e9,
                       p.op_overhead_direct.value() * 1e6, p.op_overhead_boxed.value() * 1e6));
}

void measure_gpus(const Plan& plan, const MicrobenchOptions& options, const std::string& date,
                  MachineProfile& p) {
  const Nvml nvml;
  const CudaDiscovery found = discover_cuda_devices(&nvml);
  if (!found.note.empty()) p.notes.push_back(found.note);
  for (const auto& gpu : found.devices) {
    const std::string id = "cuda:" + std::to_string(gpu.index);
    log_info("measuring " + id + " (" + gpu.name + ")");
    const torch::Device dev(torch::kCUDA, static_cast<c10::DeviceIndex>(gpu.index));
    DeviceSpec spec = cuda_device_spec(gpu, options.db);
    spec.peak_flops[DType::kFloat32] = gemm_rate(plan.gpu_gemm_n, DType::kFloat32, dev, plan.timing);
    p.gemm.push_back({id, plan.gpu_gemm_n, DType::kFloat32, 0, spec.peak_flops[DType::kFloat32]});
    for (DType d : {DType::kBFloat16, DType::kFloat16}) {
      try {
        spec.peak_flops[d] = gemm_rate(plan.gpu_gemm_n, d, dev, plan.timing);
        p.gemm.push_back({id, plan.gpu_gemm_n, d, 0, spec.peak_flops[d]});
      } catch (const Error& e) {
        p.notes.push_back(id + ": " + e.what());
      }
    }
    spec.memory_bandwidth = copy_rate(Bytes(int64_t{1} << 30), dev, plan.timing);
    // Launch overhead: a tiny kernel, synchronized every time, is an upper bound of the asynchronous cost.
    const torch::Tensor one = torch::ones({1}, torch::TensorOptions().device(dev));
    TimingOptions t = plan.timing;
    t.sync = [] { torch::cuda::synchronize(); };
    spec.op_overhead = time_repeated([&] { (void)(one + one); }, t).median;
    spec.measured = true;
    spec.source = "microbenchmark " + date + " (GEMM n=" + std::to_string(plan.gpu_gemm_n) +
                  ", 1 GiB copy, tiny-op launch); power from " +
                  (spec.tdp.value() > 0 ? "NVML/datasheet" : "nowhere");
    const Bytes big(64 << 20), small(4);
    const Seconds h2d = host_device_copy_time(big, true, gpu.index, plan.timing);
    const Seconds d2h = host_device_copy_time(big, false, gpu.index, plan.timing);
    const Seconds lat = host_device_copy_time(small, true, gpu.index, plan.timing);
    const double bw = static_cast<double>(big.value()) / std::max(h2d.value(), d2h.value());
    p.host_links.push_back(
        LinkSpec{id + " <-> host", lat, BytesPerSecond(bw),
                 "microbenchmark " + date + ": pinned 64 MiB copies (slower direction), 4-byte latency"});
    log_info(fmt::format("  {}: f32 {:.1f} TFLOP/s, memory {:.0f} GB/s, host link {:.1f} GB/s", id,
                         spec.peak_flops[DType::kFloat32].value() / 1e12, spec.memory_bandwidth.value() / 1e9,
                         bw / 1e9));
    p.devices.push_back(ProfiledDevice{id, 0, spec});
  }
}

// One measurement between two processes run by measure_loopback_allreduce (its worker decides what is timed),
// its samples and the link fitted to them stored in the profile; a failure becomes a note.
struct ProcessProbe {
  std::string what;  // for the log and the notes: "loopback all-reduce"
  const LoopbackOptions& options;
  std::vector<int64_t> quick_sizes;
  int quick_repeats = 3;
  std::vector<AllreduceSample>& samples;
  std::optional<LinkSpec>& link;
  std::function<LinkSpec(const std::vector<TimedTransfer>&)> fit;
};

void run_probe(const ProcessProbe& probe, bool quick, MachineProfile& p) {
  if (probe.options.worker_exe.empty()) {
    p.notes.push_back(probe.what + " not measured (no worker program given)");
    return;
  }
  LoopbackOptions o = probe.options;
  if (quick) {
    o.sizes = probe.quick_sizes;
    o.repeats = probe.quick_repeats;
  }
  log_info("measuring " + probe.what);
  try {
    probe.samples = measure_loopback_allreduce(o);
    std::vector<TimedTransfer> timed;
    for (const auto& s : probe.samples) timed.push_back({s.bytes, s.time});
    probe.link = probe.fit(timed);
    log_info(fmt::format("  {}: latency {:.1f} us, bandwidth {:.2f} GB/s", probe.link->name,
                         probe.link->latency.value() * 1e6, probe.link->bandwidth.value() / 1e9));
  } catch (const Error& e) {
    p.notes.push_back(probe.what + ": " + e.what());
  }
}

// The Gloo loopback all-reduce, and the two links the planner puts between a launched plan's processes
// (search/process_layout.h): one-way messages and all-reduces through shared memory.
void measure_between_processes(const MicrobenchOptions& options, bool quick, const std::string& date,
                               MachineProfile& p) {
  const std::string source = "microbenchmark " + date + ": least-squares alpha-beta fit of ";
  run_probe({"loopback all-reduce between 2 processes (c10d Gloo, 127.0.0.1)",
             options.loopback,
             {4096, 1 << 20},
             3,
             p.allreduce,
             p.loopback,
             [&](const std::vector<TimedTransfer>& t) {
               return fit_allreduce_link(
                   t, options.loopback.world, "loopback (Gloo, 127.0.0.1)",
                   source + std::to_string(t.size()) + " all-reduce sizes between 2 processes");
             }},
            quick, p);
  run_probe({"messages between 2 processes (shared memory, one way)",
             options.messages,
             {64, 1 << 20},
             5,
             p.process_messages,
             p.process_link,
             [&](const std::vector<TimedTransfer>& t) {
               return fit_message_link(t, "shared memory between processes",
                                       source +
                                           "one-way message times (to a receiver asleep in its receive) at " +
                                           std::to_string(t.size()) + " sizes between 2 pinned processes");
             }},
            quick, p);
  run_probe({"all-reduce between 2 processes through shared memory",
             options.collectives,
             {4096, 1 << 20},
             5,
             p.process_allreduce,
             p.process_collective_link,
             [&](const std::vector<TimedTransfer>& t) {
               return fit_allreduce_link(
                   t, 2, "shared memory between processes (collectives)",
                   source + std::to_string(t.size()) +
                       " all-reduce sizes between 2 pinned processes through shared memory");
             }},
            quick, p);
}

}  // namespace

ProfileMode profile_mode_from_env() {
  const char* v = std::getenv("PARTITA_PROFILE_QUICK");
  return v && *v && std::string(v) != "0" ? ProfileMode::kQuick : ProfileMode::kFull;
}

DeviceSpec cpu_spec_at_threads(const MachineProfile& profile, const DeviceSpec& base, int threads) {
  const auto it = std::find_if(profile.thread_scaling.begin(), profile.thread_scaling.end(),
                               [&](const auto& s) { return s.threads == threads; });
  PARTITA_CHECK(it != profile.thread_scaling.end(), "the machine profile has no measurement at ", threads,
                " thread(s) (it has 1..", profile.thread_scaling.size(), "): use fewer threads");
  DeviceSpec spec = base;
  spec.kind = DeviceKind::kCpu;
  // The benchmark matmul's rate at this thread count; larger GEMMs at the best count are often faster, so
  // take the best of them when measured at exactly this count.
  double f32 = it->matmul.value();
  double bf16 = 0;
  for (const auto& g : profile.gemm) {
    if (g.device != "cpu" || g.threads != threads) continue;
    if (g.dtype == DType::kFloat32) f32 = std::max(f32, g.rate.value());
    if (g.dtype == DType::kBFloat16) bf16 = g.rate.value();
  }
  // Convolutions (oneDNN) and GEMMs (BLAS) reach different rates, and either may be faster: the peak is the
  // higher of the two and each class runs at its measured share of it.
  const double peak = std::max(f32, it->conv.value());
  spec.peak_flops.clear();
  spec.peak_flops[DType::kFloat32] = FlopsPerSecond(peak);
  if (bf16 > 0) spec.peak_flops[DType::kBFloat16] = FlopsPerSecond(bf16);
  spec.flops_efficiency.clear();
  spec.flops_efficiency["matmul"] = f32 / peak;
  if (it->conv.value() > 0) spec.flops_efficiency["conv"] = it->conv.value() / peak;
  spec.memory_bandwidth = it->elementwise;
  spec.op_overhead = profile.op_overhead_boxed;
  spec.op_class_fits = fit_op_classes(profile.op_class_samples, threads, FitPass::kForward);
  spec.op_class_backward_fits = fit_op_classes(profile.op_class_samples, threads, FitPass::kBackward);
  const double share = base.cores > 0 ? std::min(1.0, static_cast<double>(threads) / base.cores) : 1.0;
  spec.tdp = base.tdp * share;
  spec.idle_power = base.idle_power * share;
  spec.cores = threads;
  spec.measured = true;
  spec.source =
      "microbenchmark " + profile.date + " at " + std::to_string(threads) +
      " intra-op thread(s) (matmul, conv, add, boxed tiny op, per-class fits of generic ops); power: " +
      base.source;
  return spec;
}

MachineProfile run_microbenchmarks(const MicrobenchOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const ThreadGuard restore_threads;
  const bool quick = options.mode == ProfileMode::kQuick;
  const Plan plan = plan_for(options.mode);
  MachineProfile p;
  const MachineFingerprint fp = machine_fingerprint();
  p.fingerprint = fp.text();
  p.key = fp.key();
  p.date = utc_now();
  p.quick = quick;
  const CpuInfo cpu = discover_cpu();
  const DeviceSpec base = cpu_device_spec(cpu, options.db);
  const int cores = std::max(1, cpu.physical_cores);
  const int max_threads = std::max(cores, cpu.threads);
  log_info(fmt::format("profiling {} ({} cores, {} hardware threads){}", fp.cpu_model, cores, cpu.threads,
                       quick ? ", quick mode" : ""));
  measure_cpu(plan, max_threads, p);
  // Operands rotate over twice the last-level cache, so calibration ops read them from memory.
  const Bytes llc = cpu.cache_bytes(3).value() > 0 ? cpu.cache_bytes(3) : cpu.cache_bytes(2);
  measure_op_classes(plan, quick, max_threads, llc.value() > 0 ? llc * 2.0 : Bytes(64 << 20), p);
  // The whole CPU runs at the thread count that is best for matmul, the op class that dominates most models
  // here; `partita estimate` re-derives a spec per model from the thread scaling (conv-heavy ones differ).
  DeviceSpec whole = cpu_spec_at_threads(p, base, p.best_matmul_threads);
  whole.cores = cores;  // the whole CPU is powered and owned whatever the thread count
  whole.tdp = base.tdp;
  whole.idle_power = base.idle_power;
  p.devices.push_back(ProfiledDevice{"cpu", p.best_matmul_threads, whole});
  if (cores > 1) {
    for (int k = 0; k < cores; ++k) {
      DeviceSpec group = cpu_spec_at_threads(p, cpu_group_spec(base, 1), 1);
      group.name = base.name + " (core " + std::to_string(k) + ")";
      // An OpenBLAS build keeps its own thread pool: a "one thread" matmul may still use every core.
      if (fp.blas.find("openblas") != std::string::npos) {
        group.source += "; OpenBLAS threads ignore the torch setting, so matmul figures may use more cores";
      }
      p.devices.push_back(ProfiledDevice{"cpu:" + std::to_string(k), 1, group});
    }
  }
  measure_gpus(plan, options, p.date, p);
  measure_between_processes(options, quick, p.date, p);
  p.notes.push_back("no RAPL/NVML power readings for the CPU: power figures are estimates");
  p.seconds_taken = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return p;
}

CachedProfile load_or_measure_profile(const MicrobenchOptions& options, bool refresh) {
  const MachineFingerprint fp = machine_fingerprint();
  CachedProfile out;
  out.path = machine_profile_path(fp.key());
  const bool want_quick = options.mode == ProfileMode::kQuick;
  if (!refresh && std::filesystem::exists(out.path)) {
    try {
      MachineProfile cached = machine_profile_from_json(read_json_file(out.path));
      // A full profile serves quick requests too; a quick one serves only quick requests.
      if (cached.fingerprint == fp.text() && (!cached.quick || want_quick)) {
        out.profile = std::move(cached);
        out.from_cache = true;
        return out;
      }
    } catch (const Error& e) {
      log_warning(std::string("ignoring the unreadable profile cache: ") + e.what());
    }
  }
  out.profile = run_microbenchmarks(options);
  std::error_code ec;
  std::filesystem::create_directories(cache_dir(), ec);
  try {
    write_json_file(out.path, machine_profile_to_json(out.profile));
  } catch (const Error& e) {
    log_warning(std::string("could not cache the machine profile: ") + e.what());
  }
  return out;
}

}  // namespace partita

#include "partita/runtime/device_binding.h"

#include <pthread.h>
#include <sched.h>

#include <dlfcn.h>

#include <thread>

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include "partita/core/error.h"
#include "partita/hardware/device.h"

namespace partita {

DeviceBinding bind_device(const std::string& id) {
  const DeviceId parsed = parse_device_id(id);
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  DeviceBinding b;
  b.id = id;
  if (parsed.kind == DeviceKind::kCuda) {
    const int count = static_cast<int>(torch::cuda::device_count());
    PARTITA_CHECK(parsed.index < count, "device ", id, " is not here: this machine has ", count,
                  " CUDA device(s); plan for the local devices (partita devices lists them)");
    b.device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(parsed.index));
    b.threads = 1;  // the host thread only launches kernels
    return b;
  }
  PARTITA_CHECK(parsed.kind == DeviceKind::kCpu, "device ", id, " is not a CPU or CUDA device");
  if (parsed.index < 0) {
    b.threads = cores;
    return b;
  }
  PARTITA_CHECK(parsed.last_core < cores, "device ", id, " is beyond this machine's ", cores,
                " cores; use cpu:0 .. cpu:", cores - 1);
  for (int c = parsed.index; c <= parsed.last_core; ++c) b.cores.push_back(c);
  b.threads = static_cast<int>(b.cores.size());
  return b;
}

void apply_to_current_thread(const DeviceBinding& binding) {
  // at::set_num_threads writes a process-wide value that each thread re-reads once, when LibTorch first
  // initialises it; so let LibTorch initialise this thread now (get_num_threads does, inside libtorch; the
  // header's inline lazy_init would mark only our own copy of its thread-local flag), then set only this
  // thread's OpenMP team size. omp_set_num_threads is looked up at run time: LibTorch brings its own OpenMP
  // runtime, and linking another one here could load two.
  (void)at::get_num_threads();
  using SetThreads = void (*)(int);
  static const auto omp_set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (omp_set) {
    omp_set(binding.threads);
  } else {
    at::set_num_threads(binding.threads);
  }
  if (binding.cores.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : binding.cores) CPU_SET(c, &set);
  // Best effort: a container may forbid pinning; the run is still correct, only less isolated.
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

}  // namespace partita

#pragma once
// A measured profile of this machine: what `partita profile` finds with microbenchmarks (libs/torch_bridge
// runs them; this type is torch-free so planning code can read a cached profile). Figures are medians of
// repeated runs on a possibly shared, noisy machine; `date` and `fingerprint` say when and where.
//
// The cache: one JSON file per machine fingerprint under cache_dir() (see below). A fingerprint changes when
// the CPU model, core count, memory size, LibTorch version or BLAS library changes, so a stale profile is
// never reused on different hardware or software.
#include <optional>
#include <string>
#include <vector>

#include "partita/core/json_io.h"
#include "partita/core/units.h"
#include "partita/hardware/device.h"

namespace partita {

// One GEMM (n x n times n x n) measurement.
struct GemmSample {
  std::string device;  // "cpu", "cuda:0"
  int64_t n = 0;
  DType dtype = DType::kFloat32;
  int threads = 0;  // intra-op threads (CPU); 0 for GPUs
  FlopsPerSecond rate{0};
};

// Intra-op thread scaling of the CPU: throughput of a fixed matmul and a fixed conv at `threads` threads.
struct ThreadScalingSample {
  int threads = 0;
  FlopsPerSecond matmul{0};
  FlopsPerSecond conv{0};
  BytesPerSecond elementwise{0};  // a large add (read 2, write 1)
};

// One calibration measurement: a generic op of an op class (not an op of any user model) at one size and
// intra-op thread count, with its work counted as the graph library counts it (flops; bytes read + written).
// The cost library fits an OpClassFit per class and thread count to these (cost/op_class_fit.h).
struct OpClassSample {
  std::string op_class;  // calibration class: "matmul", "conv", "grouped_conv", "norm", "elementwise", ...
  std::string kernel;    // what ran, for reports: "linear 64x256x256"
  int threads = 0;       // intra-op threads
  Flops flops{0};
  Bytes bytes{0};   // bytes read + bytes written (of the forward)
  Seconds time{0};  // median seconds per forward call
  Seconds backward{
      0};  // median seconds of its backward (gradients of every trainable operand); 0: not measured
};

// All-reduce of `bytes` between two local processes (c10d Gloo over 127.0.0.1): median time.
struct AllreduceSample {
  Bytes bytes{0};
  Seconds time{0};
};

// A device of this machine with its measured spec and the intra-op threads the figures were measured at.
struct ProfiledDevice {
  std::string id;   // "cpu", "cpu:0", "cuda:0"
  int threads = 0;  // CPU: intra-op threads to run it with; GPU: 0
  DeviceSpec spec;
};

struct MachineProfile {
  // The cache format; bumped whenever the profile gains measurements the cost models rely on, so that an
  // older cache is re-measured rather than silently used without them. 2: op-class calibration samples;
  // 3: recurrent-layer samples (per kernel call); 4: their FLOPs counted as the graph library counts them.
  static constexpr int kVersion = 4;
  int version = kVersion;
  std::string fingerprint;  // human-readable: "AMD EPYC | 2 cores | 24 GiB | torch 1.13.0 | libopenblas..."
  std::string key;          // short hash of fingerprint (the cache file name)
  std::string date;         // ISO 8601, UTC
  bool quick = false;       // measured in quick mode (fewer sizes and repeats)
  double seconds_taken = 0;
  std::vector<GemmSample> gemm;
  std::vector<ThreadScalingSample> thread_scaling;
  int best_matmul_threads = 1;
  int best_conv_threads = 1;
  int best_elementwise_threads = 1;
  BytesPerSecond copy_bandwidth{0};  // large tensor copy, bytes read + written per second, best threads
  BytesPerSecond add_bandwidth{0};   // large a + b, bytes read + written per second, best threads
  Seconds op_overhead_direct{0};     // a tiny op through the C++ API (at::add)
  Seconds op_overhead_boxed{0};      // the same through the boxed dispatcher, as partita's executor calls ops
  FlopsPerSecond conv_rate{0};       // conv throughput at best_conv_threads (a calibration figure)
  std::vector<OpClassSample> op_class_samples;  // calibration of the per-class roofline, every thread count
  std::vector<AllreduceSample> allreduce;
  std::optional<LinkSpec> loopback;  // alpha-beta fit of `allreduce` (p = 2)
  // One-way messages between two processes through shared memory, and their alpha-beta fit (absent in
  // profiles measured before 2026-12-05).
  std::vector<AllreduceSample> process_messages;
  std::optional<LinkSpec> process_link;
  // All-reduces between two processes through the shared-memory exchange (members arriving together), and
  // their alpha-beta fit (p = 2); absent in profiles measured before.
  std::vector<AllreduceSample> process_allreduce;
  std::optional<LinkSpec> process_collective_link;
  std::vector<LinkSpec> host_links;  // one per GPU: "cuda:K <-> host", measured pinned copies
  std::vector<ProfiledDevice> devices;
  std::vector<std::string> notes;  // one line per thing that could not be measured and why

  // The device with this id; nullptr when absent.
  const ProfiledDevice* find(const std::string& id) const;
};

Json machine_profile_to_json(const MachineProfile& profile);
// Throws partita::Error naming the missing field, or when the version is not MachineProfile::kVersion;
// callers treat that as "no usable cache" and measure again.
MachineProfile machine_profile_from_json(const Json& j);

// $XDG_CACHE_HOME/partita, else $HOME/.cache/partita, else /tmp/partita-cache; not created here.
std::string cache_dir();
// cache_dir()/machine-<key>.json
std::string machine_profile_path(const std::string& key);
// A short stable hex hash (FNV-1a 64) of a text, for cache keys.
std::string stable_hash(const std::string& text);

}  // namespace partita

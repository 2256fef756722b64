#pragma once
// Devices, links and clusters as the planner sees them: described hardware, discovered or from the database.
// No torch here. Figures are peak/nominal unless `measured` says otherwise; a measured profile wins over a
// listed one when both exist.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "partita/core/units.h"
#include "partita/graph/tensor_meta.h"

namespace partita {

enum class DeviceKind { kCpu, kCuda, kOther };

// A device id as users write it: "cpu" (the whole host CPU), "cpu:0" / "cpu:2-3" (a group of cores, a device
// of its own with that many threads), "cuda:1", or a described device in a cluster file ("node0/gpu3").
struct DeviceId {
  DeviceKind kind = DeviceKind::kCpu;
  int index = -1;      // cuda index; first core of a cpu group; -1 for the whole cpu
  int last_core = -1;  // last core of a cpu group (inclusive), -1 otherwise
  std::string to_string() const;
  int cpu_cores() const { return index < 0 ? -1 : last_core - index + 1; }
  friend auto operator<=>(const DeviceId&, const DeviceId&) = default;
};
// Throws partita::Error: "bad device id 'gpu0': use cpu, cpu:N, cpu:A-B or cuda:N".
DeviceId parse_device_id(const std::string& text);

// A calibrated cost model of one op class on one device, fitted to microbenchmarks of generic ops of that
// class (never to a model's own ops): time = fixed + max(flops / flops_rate, bytes / bandwidth) — or the sum
// of the two terms when `additive` — with bytes = bytes read + bytes written as the graph library counts
// them. A rate of 0 means that term never binds for this class (e.g. no flops term for pure copies). Figures
// are for f32; other dtypes scale flops_rate by the device's peak ratio to f32.
struct OpClassFit {
  Seconds fixed{0};              // per call: dispatch, output allocation, kernel setup, thread fork/join
  FlopsPerSecond flops_rate{0};  // sustained FLOP/s of the class at sizes like the samples; 0: no FLOP term
  BytesPerSecond bandwidth{0};   // sustained bytes/s of the class; 0: no memory term
  bool additive = false;         // compute and traffic add up (no overlap) instead of the larger one counting
  int samples = 0;               // how many measurements the fit is based on
  double rms_relative_error = 0;  // root mean square of (fit - measured) / measured over those samples
};

struct DeviceSpec {
  std::string name;  // "NVIDIA H100 SXM5 80GB", "AMD EPYC 9654"
  DeviceKind kind = DeviceKind::kCuda;
  std::map<DType, FlopsPerSecond> peak_flops;  // dense, per dtype
  BytesPerSecond memory_bandwidth{0};
  Bytes memory{0};
  Watts tdp{0};
  Watts idle_power{0};
  Seconds op_overhead{0};  // fixed cost per operator launch/dispatch (measured; 0 when unknown)
  // Measured efficiency of an op class relative to peak_flops, keyed by the cost library's op class name
  // ("conv": 0.6 means convolutions reach 60 % of the GEMM peak); absent classes run at 1.0 (the peak).
  std::map<std::string, double> flops_efficiency;
  // Calibrated per-class models keyed by the cost library's calibration class names ("matmul", "conv",
  // "grouped_conv", "norm", "elementwise", "reduction", "pool", "memory"). A class without a fit uses the
  // plain roofline above (peak x flops_efficiency, memory_bandwidth, op_overhead); datasheet specs have none.
  std::map<std::string, OpClassFit> op_class_fits;
  // The same for the backward of a class's ops, with the forward's FLOPs and bytes as the work (so the fit
  // carries the backward/forward ratio); a class without one runs backward at forward x the class ratio.
  std::map<std::string, OpClassFit> op_class_backward_fits;
  int cores = 0;          // CPUs: physical cores (threads for a core group); GPUs: 0
  bool measured = false;  // figures come from a microbenchmark of this machine, not a datasheet
  std::string source;     // where the figures come from

  // Peak for dtype, falling back to f32 when the dtype is not listed; 0 when nothing is known.
  FlopsPerSecond flops_for(DType dtype) const;
};

// A point-to-point link under the alpha-beta model: time(n bytes) = latency + n / bandwidth.
struct LinkSpec {
  std::string name;  // "NVLink 4", "PCIe 5.0 x16", "InfiniBand NDR"
  Seconds latency{0};
  BytesPerSecond bandwidth{0};
  std::string source;
};

struct ClusterDevice {
  std::string id;    // unique in the cluster: "cuda:0", "node1/gpu3", "cpu:0"
  std::string node;  // machine name; devices on one node share intra-node links
  DeviceSpec spec;
};

struct ClusterLink {
  std::string a, b;  // device ids; a link is symmetric
  LinkSpec spec;
};

// Devices plus the links between them. Where no explicit link joins two devices, `intra_node_link` applies
// on one node and `inter_node_link` across nodes.
struct Cluster {
  std::string name;
  std::vector<ClusterDevice> devices;
  std::vector<ClusterLink> links;
  std::optional<LinkSpec> intra_node_link;
  std::optional<LinkSpec> inter_node_link;
  // Between two processes of one node (the processes of `partita launch`): point-to-point messages and
  // collectives. Absent: planning estimates them from the node's CPU (search/process_layout.h).
  std::optional<LinkSpec> process_link;
  std::optional<LinkSpec> process_collective_link;

  // The link between two distinct devices; throws partita::Error when the cluster does not say.
  LinkSpec link_between(const std::string& a, const std::string& b) const;
  int index_of(const std::string& id) const;  // -1 when absent
};

}  // namespace partita

#pragma once
// Compute cost model: how long one graph node takes on one device, forward and backward.
//
// Model (roofline): an op is bound either by arithmetic or by memory traffic, never both at once, so
//   time = max(flops / peak_flops(dtype), (bytes_read + bytes_written) / memory_bandwidth) + op_overhead.
// When the device has a calibrated fit for the node's calibration class (DeviceSpec::op_class_fits, measured
// by `partita profile` on generic ops of the class; see cost/op_class_fit.h) the calibrated form replaces it:
//   time = fit.fixed + max(flops / fit.flops_rate, bytes / fit.bandwidth)   (or the sum, fit.additive).
// Assumptions, stated so callers know what the number means:
//   - peak_flops is the dense datasheet (or measured) peak for the dtype; real kernels reach 30-80 % of it,
//     so uncalibrated roofline times are optimistic lower bounds. A calibrated fit says what generic ops of
//     the class really reach at sizes like the benchmark's, fixed per-call costs included; it is measured in
//     f32, and other dtypes scale its flops rate by the device's peak ratio to f32.
//   - every byte in OpCost crosses memory once (no cache reuse across ops, no fusion); a fit's bandwidth
//     already includes whatever caching its benchmark sizes enjoyed.
//   - op_overhead is the per-op launch/dispatch cost of the device (0 when unknown), added once per kernel
//     the op launches (OpCost::kernel_calls: 1 for almost every op, a few per time step for a recurrent
//     layer); a calibrated fit's fixed part is likewise paid once per kernel call.
//   - structural ops (views, list construct, shape queries) cost 0, overhead included: they do not launch
//     (on a calibrated local CPU an ATen view still costs one dispatcher call, op_overhead).
//   - an op with CostStatus::kNoEstimate costs only op_overhead (or its class's fixed cost when calibrated):
//     partita has no formula, so it does not guess; reports list such ops, and profiling fills them in.
//   - backward time = forward time * backward_ratio(op class) (see below), or, when the device has a
//     calibrated backward fit for the class (DeviceSpec::op_class_backward_fits), that fit applied to the
//     forward's FLOPs and bytes.
// All functions here are pure and thread-safe.
#include <string>
#include <string_view>
#include <vector>

#include "partita/core/units.h"
#include "partita/graph/graph.h"
#include "partita/hardware/device.h"

namespace partita {

// A coarse class of operator, enough to choose a backward ratio and to explain costs in reports.
enum class OpClass {
  kMatmul,       // linear, matmul, mm, bmm, addmm, baddbmm, einsum, scaled_dot_product_attention
  kConv,         // convolution, conv1d/2d/3d, conv_transpose*
  kNorm,         // batch_norm, layer_norm, group_norm, instance_norm, rms_norm
  kElementwise,  // activations, arithmetic, dropout, softmax-free pointwise ops
  kReduction,    // sum, mean, max, softmax, log_softmax, pooling, cross-entropy style losses
  kMemory,  // copies and layout changes that move data: cat, stack, contiguous, to, clone, embedding, index
  kStructural,  // no data movement: prim::*, views, reshape/view/flatten/transpose/permute, size, slice
  kRecurrent,   // lstm, gru, rnn_tanh, rnn_relu: a loop of small GEMMs and element-wise ops over time steps
  kOther,       // anything else
};

// Classifies a node by its op name ("aten::linear" -> kMatmul). A node whose cost status is kStructural is
// always kStructural. Unknown ops are kOther.
OpClass classify_op(const Node& node);
// Lower-case name for reports and JSON: "matmul", "conv", "norm", "elementwise", "reduction", "memory",
// "structural", "recurrent", "other".
std::string_view op_class_name(OpClass op_class);

// Backward time / forward time for an op class. Matmul and conv compute two products in backward (grad input
// and grad weight) from one in forward: 2.0. Norms recompute statistics and produce three gradients: 1.5.
// Elementwise, reduction and memory ops read the saved input and the output gradient, about the forward's
// traffic again: 1.0. Structural ops: 0 (their backward is a view as well). Recurrent layers: 2.0, their
// GEMMs' ratio; their backward also launches about twice their forward's calls (measured with LibTorch's
// profiler: per time step an LSTM runs 11 forward calls and 26 backward nodes, a GRU 12 and 28, an Elman
// RNN 3.4 and 8). Other: 1.0.
double backward_ratio(OpClass op_class);

// Roofline time of one op with cost `cost` on device `spec` at `dtype` (see the model above). Throws
// partita::Error when the device lists neither the dtype nor f32 (peak 0) or has zero memory bandwidth while
// the op needs that resource.
// `flops_efficiency` (0, 1] scales the peak for this op (DeviceSpec::flops_efficiency of its class).
Seconds roofline_time(const OpCost& cost, const DeviceSpec& spec, DType dtype, double flops_efficiency = 1.0);

// Calibrated roofline time of one op with cost `cost` under `fit` (see the model above), the flops rate
// scaled to `dtype` by spec's peak ratio to f32.
Seconds roofline_time(const OpCost& cost, const DeviceSpec& spec, DType dtype, const OpClassFit& fit);

// The calibration class of a node (the key of DeviceSpec::op_class_fits): op_class_name(op_class), except
// "grouped_conv" for a convolution whose weight has fewer input channels than its input (groups > 1, e.g.
// depthwise): those kernels are memory-bound and run different code than dense convolutions; and "pool" for
// windowed pooling (max_pool*, avg_pool*, not adaptive ones), whose kernels differ from row reductions.
std::string_view calibration_class(const Graph& graph, const Node& node, OpClass op_class);

// Forward and backward time of one node on one device, in seconds, at the graph's batch. The *_fixed parts
// (included in forward and backward) are what a call costs whatever its size: launch, dispatch, setup (the
// roofline's op_overhead, or a calibrated fit's fixed term). A run on fewer samples than the graph's batch
// pays them in full; the rest scales with the samples (search/stage_model.h).
struct NodeTimes {
  Seconds forward{0};
  Seconds backward{0};
  Seconds forward_fixed{0};
  Seconds backward_fixed{0};
};

// Roofline forward and backward time of one node on `spec`: the calibrated fit of its calibration class
// when spec has one, else the plain roofline at its class's flops_efficiency (default 1); backward: the
// class's calibrated backward fit on the forward's work when spec has one, else forward *
// backward_ratio(classify_op(node)). Structural nodes without an estimate cost 0 — except ATen ones on a
// calibrated device (spec.op_class_fits not empty: a local CPU running partita's executor), which cost one
// dispatcher call (spec.op_overhead) forward; their backward is free either way.
NodeTimes roofline_node_times(const Graph& graph, const Node& node, const DeviceSpec& spec);

// Per-device, per-node times for a graph. times[s][n] is node n on spec s.
struct CostTable {
  std::vector<std::string> spec_names;        // DeviceSpec::name, one per row
  std::vector<std::vector<NodeTimes>> times;  // [spec][node]
  std::string method;                         // "roofline" or "profiled" (when any row holds measurements)

  // Sum over nodes [first, last] (inclusive) on spec `spec`.
  NodeTimes range_total(int spec, NodeId first, NodeId last) const;
};

// The compute dtype of a node: the dtype of its first floating-point output tensor, else of its first
// floating input tensor, else f32.
DType node_compute_dtype(const Graph& graph, const Node& node);

// Roofline table for every node of `graph` on every spec (roofline_node_times of each node).
CostTable roofline_cost_table(const Graph& graph, const std::vector<DeviceSpec>& specs);

// Where the fixed parts of measured times come from.
enum class MeasuredFixedParts {
  // Measured at one batch, which cannot tell a call's fixed part from the rest: keep the row's (the
  // calibrated or roofline per-call cost), capped at the measured time.
  kFromRow,
  // The measurement's own (fit_per_call_parts over two batch sizes), zeros included.
  kMeasured,
};

// Replaces row `spec` with measured times (one per node; measured wins over roofline) and sets method to
// "profiled"; the fixed parts as `fixed` says. Throws partita::Error when `spec` is out of range or the sizes
// differ.
void apply_measured_times(CostTable& table, int spec, const std::vector<NodeTimes>& measured,
                          MeasuredFixedParts fixed = MeasuredFixedParts::kFromRow);

// Per-call parts from the same nodes measured at two batch sizes. Model: a node's time on s samples is
// fixed + per_sample * s (what StageModel assumes), so the line through (small_batch, at_small) and (batch,
// at_batch) gives fixed = (batch * t_small - small_batch * t_batch) / (batch - small_batch). What it captures
// beyond launch and dispatch: a small call's lower efficiency (a GEMM of one sample's rows runs at a fraction
// of a full batch's rate), which a per-call constant fitted over generic ops misses. Returns at_batch's times
// (unchanged) with forward_fixed/backward_fixed from the fit, clamped to [0, the time at batch]: a node that
// is no faster on fewer samples (weights' transposes, noise on tiny ops) is all fixed; one that is more than
// proportionally faster (cache effects) has none. Throws partita::Error unless 0 < small_batch < batch and
// the vectors have the same size.
std::vector<NodeTimes> fit_per_call_parts(const std::vector<NodeTimes>& at_batch, int batch,
                                          const std::vector<NodeTimes>& at_small, int small_batch);

// A DeviceSpec for `cores` cores of a CPU whose whole-CPU spec is `whole_cpu` (whole_cpu.cores > 0).
// Peak FLOP/s scales linearly with cores (each core has its own vector units). Memory bandwidth does NOT
// scale linearly: a few cores can already draw a large share of the socket's bandwidth, so a group gets
// min(1, 2 * cores / total) of it (two cores' worth of memory-level parallelism per core, capped by the
// whole); calibrated class fits scale the same way (fixed costs unchanged). Memory size is shared (the
// whole), watts scale linearly, op_overhead is unchanged. Throws partita::Error when cores is not in [1,
// whole_cpu.cores]. Same as cpu_group_spec in partita/hardware/cpu_spec.h (which the hardware library needs
// for local core groups and cluster files).
DeviceSpec cpu_core_group_spec(const DeviceSpec& whole_cpu, int cores);

}  // namespace partita

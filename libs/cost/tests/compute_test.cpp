#include "partita/cost/compute.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

DeviceSpec test_gpu() {
  DeviceSpec s;
  s.name = "test gpu";
  s.peak_flops[DType::kFloat32] = FlopsPerSecond(10e12);
  s.peak_flops[DType::kBFloat16] = FlopsPerSecond(100e12);
  s.memory_bandwidth = BytesPerSecond(1e12);
  s.op_overhead = Seconds(10e-6);
  return s;
}

OpCost cost(double flops, int64_t read, int64_t written, CostStatus status = CostStatus::kEstimated) {
  return OpCost{Flops(flops), Bytes(read), Bytes(written), status};
}

TEST(Roofline, ComputeBoundMemoryBoundAndSpecialCases) {
  const DeviceSpec gpu = test_gpu();
  // 1024^3 multiply-adds: 2.147483648e9 FLOP / 1e13 = 214.7483648 us > 12582912 B / 1e12 = 12.58 us; + 10 us.
  EXPECT_NEAR(roofline_time(cost(2.147483648e9, 8388608, 4194304), gpu, DType::kFloat32).value(),
              224.7483648e-6, 1e-15);
  // Same in bf16: 21.47483648 us compute vs 12.582912 us memory; + 10 us.
  EXPECT_NEAR(roofline_time(cost(2.147483648e9, 8388608, 4194304), gpu, DType::kBFloat16).value(),
              31.47483648e-6, 1e-15);
  // f16 is not listed: falls back to f32.
  EXPECT_NEAR(roofline_time(cost(2.147483648e9, 0, 0), gpu, DType::kFloat16).value(), 224.7483648e-6, 1e-15);
  // Elementwise: 1e6 FLOP (0.1 us) vs 8e6 B (8 us); + 10 us.
  EXPECT_NEAR(roofline_time(cost(1e6, 4'000'000, 4'000'000), gpu, DType::kFloat32).value(), 18e-6, 1e-15);
  EXPECT_EQ(roofline_time(cost(1e9, 1, 1, CostStatus::kStructural), gpu, DType::kFloat32).value(), 0.0);
  EXPECT_DOUBLE_EQ(roofline_time(cost(1e9, 1, 1, CostStatus::kNoEstimate), gpu, DType::kFloat32).value(),
                   10e-6);
  DeviceSpec empty;
  EXPECT_THROW(roofline_time(cost(1, 0, 0), empty, DType::kFloat32), Error);
  EXPECT_THROW(roofline_time(cost(0, 1, 0), empty, DType::kFloat32), Error);
}

TEST(OpClassTest, ClassifyAndBackwardRatio) {
  Node n;
  const auto cls = [&](const char* op) {
    n.op = op;
    return classify_op(n);
  };
  EXPECT_EQ(cls("aten::linear"), OpClass::kMatmul);
  EXPECT_EQ(cls("aten::_convolution"), OpClass::kConv);
  EXPECT_EQ(cls("aten::layer_norm"), OpClass::kNorm);
  EXPECT_EQ(cls("aten::relu_"), OpClass::kElementwise);
  EXPECT_EQ(cls("aten::softmax"), OpClass::kReduction);
  EXPECT_EQ(cls("aten::cat"), OpClass::kMemory);
  EXPECT_EQ(cls("aten::upsample_nearest2d"), OpClass::kMemory);
  EXPECT_EQ(cls("aten::pixel_shuffle"), OpClass::kMemory);
  EXPECT_EQ(cls("aten::view"), OpClass::kStructural);
  EXPECT_EQ(cls("prim::ListConstruct"), OpClass::kStructural);
  EXPECT_EQ(cls("aten::__getitem__"), OpClass::kStructural);
  EXPECT_EQ(cls("aten::frobnicate"), OpClass::kOther);
  EXPECT_EQ(cls("aten::lstm"), OpClass::kRecurrent);
  EXPECT_EQ(cls("aten::gru"), OpClass::kRecurrent);
  EXPECT_EQ(cls("aten::rnn_tanh"), OpClass::kRecurrent);
  EXPECT_EQ(op_class_name(OpClass::kRecurrent), "recurrent");
  EXPECT_EQ(backward_ratio(OpClass::kRecurrent), 2.0);
  n.cost.status = CostStatus::kStructural;
  EXPECT_EQ(cls("aten::linear"), OpClass::kStructural);
  EXPECT_EQ(backward_ratio(OpClass::kMatmul), 2.0);
  EXPECT_EQ(backward_ratio(OpClass::kConv), 2.0);
  EXPECT_EQ(backward_ratio(OpClass::kNorm), 1.5);
  EXPECT_EQ(backward_ratio(OpClass::kElementwise), 1.0);
  EXPECT_EQ(backward_ratio(OpClass::kStructural), 0.0);
  EXPECT_EQ(op_class_name(OpClass::kReduction), "reduction");
}

// x[1024,1024] -> linear -> y -> relu -> z -> view -> v -> ListConstruct -> l
Graph small_graph(DType dtype) {
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1024, 1024}, dtype}};
  const ValueId w = g.add_parameter("w", true);
  g.value(w).tensors = {TensorMeta{{1024, 1024}, dtype}};
  const auto tensor = [&](const char* name) {
    const ValueId v = g.add_value(ValueKind::kTensor, name);
    g.value(v).tensors = {TensorMeta{{1024, 1024}, dtype}};
    return v;
  };
  const ValueId y = tensor("y"), z = tensor("z"), v = tensor("v");
  const ValueId l = g.add_value(ValueKind::kList, "l");
  g.add_node("aten::linear", {x, w}, {y});
  g.add_node("aten::relu", {y}, {z});
  g.add_node("aten::view", {z}, {v});
  g.add_node("prim::ListConstruct", {v}, {l});
  const int64_t mb = 1024 * 1024 * dtype_size(dtype);
  g.node(0).cost = cost(2.147483648e9, 2 * mb, mb);
  g.node(1).cost = cost(1048576, mb, mb);
  g.node(2).cost = cost(0, 0, 0, CostStatus::kStructural);
  // node 3 stays kNoEstimate: a prim node is still free.
  return g;
}

TEST(CostTableTest, RooflineTable) {
  const Graph g = small_graph(DType::kFloat32);
  DeviceSpec slow = test_gpu();
  slow.name = "slow";
  slow.peak_flops[DType::kFloat32] = FlopsPerSecond(1e12);
  const CostTable t = roofline_cost_table(g, {test_gpu(), slow});
  EXPECT_EQ(t.method, "roofline");
  EXPECT_EQ(t.spec_names, (std::vector<std::string>{"test gpu", "slow"}));
  ASSERT_EQ(t.times.size(), 2u);
  ASSERT_EQ(t.times[0].size(), 4u);
  EXPECT_NEAR(t.times[0][0].forward.value(), 224.7483648e-6, 1e-15);
  EXPECT_NEAR(t.times[0][0].backward.value(), 449.4967296e-6, 1e-15);  // matmul: 2x
  // relu: 8388608 B / 1e12 = 8.388608 us > 0.1 us compute; + 10 us; backward 1x.
  EXPECT_NEAR(t.times[0][1].forward.value(), 18.388608e-6, 1e-15);
  EXPECT_NEAR(t.times[0][1].backward.value(), 18.388608e-6, 1e-15);
  EXPECT_EQ(t.times[0][2].forward.value(), 0.0);
  EXPECT_EQ(t.times[0][3].forward.value(), 0.0);
  // Each call's launch (op_overhead, 10 us) is its fixed part, forward and backward; views launch nothing.
  EXPECT_DOUBLE_EQ(t.times[0][0].forward_fixed.value(), 10e-6);
  EXPECT_DOUBLE_EQ(t.times[0][0].backward_fixed.value(), 10e-6);
  EXPECT_DOUBLE_EQ(t.times[0][1].forward_fixed.value(), 10e-6);
  EXPECT_EQ(t.times[0][2].forward_fixed.value(), 0.0);
  // slow: 2.147483648e9 / 1e12 = 2147.483648 us + 10 us.
  EXPECT_NEAR(t.times[1][0].forward.value(), 2157.483648e-6, 1e-14);
  const NodeTimes total = t.range_total(0, 0, 3);
  EXPECT_NEAR(total.forward.value(), (224.7483648 + 18.388608) * 1e-6, 1e-15);
  EXPECT_NEAR(total.backward.value(), (449.4967296 + 18.388608) * 1e-6, 1e-15);
  EXPECT_THROW(t.range_total(2, 0, 0), Error);
  EXPECT_THROW(t.range_total(0, 2, 4), Error);
}

TEST(CostTableTest, DtypeFromFirstFloatingOutput) {
  const Graph g = small_graph(DType::kBFloat16);
  EXPECT_EQ(node_compute_dtype(g, g.node(0)), DType::kBFloat16);
  const CostTable t = roofline_cost_table(g, {test_gpu()});
  // bf16: 21.47483648 us compute vs 3 x 2 MiB / 1e12 = 6.291456 us memory; + 10 us.
  EXPECT_NEAR(t.times[0][0].forward.value(), 31.47483648e-6, 1e-15);
}

TEST(CostTableTest, MeasuredTimesWin) {
  const Graph g = small_graph(DType::kFloat32);
  CostTable t = roofline_cost_table(g, {test_gpu()});
  std::vector<NodeTimes> measured(4);
  measured[0] = NodeTimes{Seconds(1e-3), Seconds(2.5e-3)};
  measured[1] = NodeTimes{Seconds(4e-6), Seconds(4e-6)};  // faster than the roofline's 10 us launch
  apply_measured_times(t, 0, measured);
  EXPECT_EQ(t.method, "profiled");
  EXPECT_DOUBLE_EQ(t.times[0][0].backward.value(), 2.5e-3);
  // A measurement at one batch keeps the row's per-call part, capped at the measured time.
  EXPECT_DOUBLE_EQ(t.times[0][0].forward_fixed.value(), 10e-6);
  EXPECT_DOUBLE_EQ(t.times[0][1].forward_fixed.value(), 4e-6);
  EXPECT_DOUBLE_EQ(t.times[0][1].backward_fixed.value(), 4e-6);
  EXPECT_THROW(apply_measured_times(t, 1, measured), Error);
  EXPECT_THROW(apply_measured_times(t, 0, std::vector<NodeTimes>(3)), Error);
}

TEST(CostTableTest, MeasuredFixedPartsWinWhenTheMeasurementHasThem) {
  const Graph g = small_graph(DType::kFloat32);
  CostTable t = roofline_cost_table(g, {test_gpu()});
  std::vector<NodeTimes> measured(4);
  measured[0] = NodeTimes{Seconds(1e-3), Seconds(2e-3), Seconds(3e-4), Seconds(0)};
  apply_measured_times(t, 0, measured, MeasuredFixedParts::kMeasured);
  EXPECT_DOUBLE_EQ(t.times[0][0].forward_fixed.value(), 3e-4);
  EXPECT_EQ(t.times[0][0].backward_fixed.value(), 0.0);  // a measured zero is kept, not the row's 10 us
}

TEST(FitPerCallParts, LineThroughTwoBatchSizes) {
  // Node 0: 2 us + 1 us per sample forward, 5 us + 3 us per sample backward: at 8 samples 10 / 29 us, at 2
  // samples 4 / 11 us. Node 1 is no faster on fewer samples (all fixed); node 2 is more than proportionally
  // faster (no fixed part); node 3 costs nothing.
  const std::vector<NodeTimes> at8 = {
      {Seconds(10e-6), Seconds(29e-6)}, {Seconds(6e-6), Seconds(0)}, {Seconds(80e-6), Seconds(160e-6)}, {}};
  const std::vector<NodeTimes> at2 = {
      {Seconds(4e-6), Seconds(11e-6)}, {Seconds(7e-6), Seconds(0)}, {Seconds(10e-6), Seconds(30e-6)}, {}};
  const auto fit = fit_per_call_parts(at8, 8, at2, 2);
  ASSERT_EQ(fit.size(), 4u);
  EXPECT_NEAR(fit[0].forward_fixed.value(), 2e-6, 1e-18);
  EXPECT_NEAR(fit[0].backward_fixed.value(), 5e-6, 1e-18);
  EXPECT_DOUBLE_EQ(fit[0].forward.value(), 10e-6);  // the times at the full batch are kept
  EXPECT_DOUBLE_EQ(fit[0].backward.value(), 29e-6);
  EXPECT_DOUBLE_EQ(fit[1].forward_fixed.value(), 6e-6);
  EXPECT_EQ(fit[2].forward_fixed.value(), 0.0);
  EXPECT_EQ(fit[2].backward_fixed.value(), 0.0);
  EXPECT_EQ(fit[3].forward_fixed.value(), 0.0);

  // Through StageModel's rule (fixed + (time - fixed) / batch per sample), the fit reproduces both
  // measurements of node 0.
  const double per_sample = (fit[0].forward.value() - fit[0].forward_fixed.value()) / 8;
  EXPECT_NEAR(fit[0].forward_fixed.value() + 2 * per_sample, 4e-6, 1e-18);

  EXPECT_THROW(fit_per_call_parts(at8, 8, at2, 8), Error);
  EXPECT_THROW(fit_per_call_parts(at8, 8, at2, 0), Error);
  EXPECT_THROW(fit_per_call_parts(at8, 8, std::vector<NodeTimes>(3), 2), Error);
}

OpClassFit class_fit(double fixed, double rate, double bandwidth, bool additive = false) {
  OpClassFit f;
  f.fixed = Seconds(fixed);
  f.flops_rate = FlopsPerSecond(rate);
  f.bandwidth = BytesPerSecond(bandwidth);
  f.additive = additive;
  return f;
}

TEST(Roofline, CalibratedClassFit) {
  const DeviceSpec gpu = test_gpu();  // peaks: f32 10 TFLOP/s, bf16 100 TFLOP/s
  const OpClassFit fit = class_fit(3e-6, 1e12, 100e9);
  // 2e9 FLOP / 1e12 = 2000 us > 12e6 B / 100e9 = 120 us; + 3 us fixed.
  EXPECT_NEAR(roofline_time(cost(2e9, 8'000'000, 4'000'000), gpu, DType::kFloat32, fit).value(), 2003e-6,
              1e-12);
  // bf16 runs at the device's bf16/f32 peak ratio (10x): 200 us > 120 us; + 3 us.
  EXPECT_NEAR(roofline_time(cost(2e9, 8'000'000, 4'000'000), gpu, DType::kBFloat16, fit).value(), 203e-6,
              1e-12);
  // Additive: 2000 + 120 + 3 us.
  EXPECT_NEAR(
      roofline_time(cost(2e9, 8'000'000, 4'000'000), gpu, DType::kFloat32, class_fit(3e-6, 1e12, 100e9, true))
          .value(),
      2123e-6, 1e-12);
  // No formula: the class's fixed cost only; structural: nothing.
  EXPECT_DOUBLE_EQ(roofline_time(cost(1e9, 1, 1, CostStatus::kNoEstimate), gpu, DType::kFloat32, fit).value(),
                   3e-6);
  EXPECT_EQ(roofline_time(cost(1e9, 1, 1, CostStatus::kStructural), gpu, DType::kFloat32, fit).value(), 0.0);
}

// An op that launches several kernels (a recurrent layer: a few per time step) pays the fixed per-call cost
// once per kernel, in the plain roofline and in a calibrated fit alike.
TEST(Roofline, FixedCostIsPaidOncePerKernelCall) {
  const DeviceSpec gpu = test_gpu();           // op_overhead 10 us
  OpCost c = cost(1e6, 4'000'000, 4'000'000);  // 8 us of traffic
  c.kernel_calls = 30;
  EXPECT_NEAR(roofline_time(c, gpu, DType::kFloat32).value(), 8e-6 + 30 * 10e-6, 1e-15);
  EXPECT_NEAR(roofline_time(c, gpu, DType::kFloat32, class_fit(3e-6, 1e12, 1e12)).value(), 8e-6 + 30 * 3e-6,
              1e-15);

  // In a cost table the fixed parts follow: forward 30 calls; a recurrent layer's backward, with no
  // backward fit, twice its forward (time and calls).
  Graph g;
  const ValueId x = g.add_input("x");
  g.value(x).tensors = {TensorMeta{{1000, 1000}, DType::kFloat32}};
  const ValueId y = g.add_value(ValueKind::kTensor, "y");
  g.value(y).tensors = {TensorMeta{{1000, 1000}, DType::kFloat32}};
  g.add_node("aten::lstm", {x}, {y});
  g.node(0).cost = c;
  const NodeTimes t = roofline_cost_table(g, {gpu}).times[0][0];
  EXPECT_NEAR(t.forward.value(), 308e-6, 1e-15);
  EXPECT_NEAR(t.forward_fixed.value(), 300e-6, 1e-15);
  EXPECT_NEAR(t.backward.value(), 616e-6, 1e-15);
  EXPECT_NEAR(t.backward_fixed.value(), 600e-6, 1e-15);
  DeviceSpec calibrated = gpu;
  calibrated.op_class_fits["recurrent"] = class_fit(3e-6, 1e12, 1e12);
  const NodeTimes f = roofline_cost_table(g, {calibrated}).times[0][0];
  EXPECT_NEAR(f.forward.value(), 98e-6, 1e-15);
  EXPECT_NEAR(f.forward_fixed.value(), 90e-6, 1e-15);
  EXPECT_NEAR(f.backward_fixed.value(), 180e-6, 1e-15);
}

TEST(CostTableTest, CalibratedFitsReplaceTheRooflineAndTheBackwardRatio) {
  const Graph g = small_graph(DType::kFloat32);
  DeviceSpec cpu = test_gpu();
  cpu.op_overhead = Seconds(0.5e-6);
  cpu.op_class_fits["matmul"] = class_fit(2e-6, 1e12, 0);  // 2.147483648e9 FLOP -> 2147.483648 us + 2 us
  cpu.op_class_backward_fits["matmul"] = class_fit(5e-6, 0.5e12, 0);  // 4294.967296 us + 5 us
  const CostTable t = roofline_cost_table(g, {cpu});
  EXPECT_NEAR(t.times[0][0].forward.value(), 2149.483648e-6, 1e-12);
  EXPECT_NEAR(t.times[0][0].backward.value(), 4299.967296e-6, 1e-12);
  // relu has no fit: the plain roofline, 8.388608 us + 0.5 us op_overhead; backward x1.
  EXPECT_NEAR(t.times[0][1].forward.value(), 8.888608e-6, 1e-12);
  EXPECT_NEAR(t.times[0][1].backward.value(), 8.888608e-6, 1e-12);
  // On a calibrated device an ATen view costs one dispatcher call; a prim node still nothing.
  EXPECT_DOUBLE_EQ(t.times[0][2].forward.value(), 0.5e-6);
  EXPECT_EQ(t.times[0][2].backward.value(), 0.0);
  EXPECT_EQ(t.times[0][3].forward.value(), 0.0);
  // Fixed parts: the fits' fixed terms; relu's op_overhead; the view's whole dispatcher call.
  EXPECT_DOUBLE_EQ(t.times[0][0].forward_fixed.value(), 2e-6);
  EXPECT_DOUBLE_EQ(t.times[0][0].backward_fixed.value(), 5e-6);
  EXPECT_DOUBLE_EQ(t.times[0][1].forward_fixed.value(), 0.5e-6);
  EXPECT_DOUBLE_EQ(t.times[0][1].backward_fixed.value(), 0.5e-6);
  EXPECT_DOUBLE_EQ(t.times[0][2].forward_fixed.value(), 0.5e-6);
}

TEST(CostTableTest, CalibrationClassSplitsGroupedConvolutionsAndWindowedPooling) {
  Graph g;
  const auto tensor = [&](std::vector<int64_t> shape) {
    const ValueId v = g.add_value(ValueKind::kTensor, "t");
    g.value(v).tensors = {TensorMeta{std::move(shape), DType::kFloat32}};
    return v;
  };
  const ValueId x = tensor({2, 32, 8, 8});
  g.add_node("aten::_convolution", {x, tensor({32, 1, 3, 3})}, {tensor({2, 32, 8, 8})});   // depthwise
  g.add_node("aten::_convolution", {x, tensor({64, 32, 3, 3})}, {tensor({2, 64, 8, 8})});  // dense
  g.add_node("aten::max_pool2d", {x}, {tensor({2, 32, 4, 4})});
  g.add_node("aten::adaptive_avg_pool2d", {x}, {tensor({2, 32, 1, 1})});
  const auto name = [&](NodeId n) { return calibration_class(g, g.node(n), classify_op(g.node(n))); };
  EXPECT_EQ(name(0), "grouped_conv");
  EXPECT_EQ(name(1), "conv");
  EXPECT_EQ(name(2), "pool");
  EXPECT_EQ(name(3), "reduction");
}

TEST(CpuCoreGroup, ScalesLikeTheHardwareLibrary) {
  DeviceSpec cpu;
  cpu.name = "cpu4";
  cpu.kind = DeviceKind::kCpu;
  cpu.cores = 4;
  cpu.peak_flops[DType::kFloat32] = FlopsPerSecond(400e9);
  cpu.memory_bandwidth = BytesPerSecond(40e9);
  cpu.tdp = Watts(100);
  const DeviceSpec one = cpu_core_group_spec(cpu, 1);
  EXPECT_DOUBLE_EQ(one.flops_for(DType::kFloat32).value(), 100e9);
  EXPECT_DOUBLE_EQ(one.memory_bandwidth.value(), 20e9);  // 40 x min(1, 2 x 1/4)
  EXPECT_DOUBLE_EQ(one.tdp.value(), 25.0);
  EXPECT_EQ(one.cores, 1);
  EXPECT_THROW(cpu_core_group_spec(cpu, 5), Error);
  // Calibrated fits scale like the figures they refine; fixed costs do not.
  cpu.op_class_fits["conv"] = class_fit(10e-6, 200e9, 40e9);
  cpu.op_class_backward_fits["conv"] = class_fit(20e-6, 100e9, 20e9);
  const DeviceSpec two = cpu_core_group_spec(cpu, 2);
  EXPECT_DOUBLE_EQ(two.op_class_fits.at("conv").flops_rate.value(), 100e9);
  EXPECT_DOUBLE_EQ(two.op_class_fits.at("conv").bandwidth.value(), 40e9);  // min(1, 2 x 1/2)
  EXPECT_DOUBLE_EQ(two.op_class_fits.at("conv").fixed.value(), 10e-6);
  EXPECT_DOUBLE_EQ(two.op_class_backward_fits.at("conv").flops_rate.value(), 50e9);
}

}  // namespace
}  // namespace partita

#include "partita/hardware/device_json.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

DeviceSpec calibrated_cpu() {
  DeviceSpec s;
  s.name = "host";
  s.kind = DeviceKind::kCpu;
  s.peak_flops[DType::kFloat32] = FlopsPerSecond(2e11);
  s.memory_bandwidth = BytesPerSecond(4e10);
  s.op_overhead = Seconds(5e-7);
  s.flops_efficiency["conv"] = 0.6;
  s.op_class_fits["conv"] =
      OpClassFit{Seconds(2e-5), FlopsPerSecond(4e11), BytesPerSecond(2.5e10), true, 8, 0.12};
  s.op_class_fits["memory"] =
      OpClassFit{Seconds(7e-7), FlopsPerSecond(0), BytesPerSecond(3e10), false, 6, 0.2};
  s.op_class_backward_fits["conv"] =
      OpClassFit{Seconds(4e-5), FlopsPerSecond(2e11), BytesPerSecond(1e10), false, 7, 0.15};
  s.cores = 2;
  s.measured = true;
  s.source = "test";
  return s;
}

TEST(DeviceJson, ClassFitsRoundTrip) {
  const DeviceSpec back = device_spec_from_json(device_spec_to_json(calibrated_cpu()));
  ASSERT_EQ(back.op_class_fits.size(), 2u);
  const OpClassFit& conv = back.op_class_fits.at("conv");
  EXPECT_DOUBLE_EQ(conv.fixed.value(), 2e-5);
  EXPECT_DOUBLE_EQ(conv.flops_rate.value(), 4e11);
  EXPECT_DOUBLE_EQ(conv.bandwidth.value(), 2.5e10);
  EXPECT_TRUE(conv.additive);
  EXPECT_EQ(conv.samples, 8);
  EXPECT_DOUBLE_EQ(conv.rms_relative_error, 0.12);
  EXPECT_FALSE(back.op_class_fits.at("memory").additive);
  EXPECT_EQ(back.op_class_fits.at("memory").flops_rate.value(), 0.0);
  ASSERT_EQ(back.op_class_backward_fits.size(), 1u);
  EXPECT_DOUBLE_EQ(back.op_class_backward_fits.at("conv").fixed.value(), 4e-5);
  EXPECT_DOUBLE_EQ(back.flops_efficiency.at("conv"), 0.6);
}

TEST(DeviceJson, SpecsWithoutFitsStillLoad) {
  Json j = device_spec_to_json(calibrated_cpu());
  j.erase("op_class_fits");
  j.erase("op_class_backward_fits");
  const DeviceSpec back = device_spec_from_json(j);
  EXPECT_TRUE(back.op_class_fits.empty());
  EXPECT_TRUE(back.op_class_backward_fits.empty());
  EXPECT_DOUBLE_EQ(back.op_overhead.value(), 5e-7);
}

TEST(DeviceJson, BrokenFitsNameTheField) {
  Json j = device_spec_to_json(calibrated_cpu());
  j["op_class_fits"]["conv"].erase("bandwidth");
  EXPECT_THROW(device_spec_from_json(j), Error);
  j["op_class_fits"] = 3;
  EXPECT_THROW(device_spec_from_json(j), Error);
}

}  // namespace
}  // namespace partita

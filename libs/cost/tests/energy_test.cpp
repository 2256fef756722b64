#include "partita/cost/energy.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

TEST(Energy, BusyAtTdpIdleAtIdlePower) {
  DeviceSpec gpu;
  gpu.name = "H200";
  gpu.tdp = Watts(700);
  gpu.idle_power = Watts(90);
  // 700 W x 2 s + 90 W x 3 s = 1400 + 270 J.
  EXPECT_DOUBLE_EQ(device_energy(gpu, Seconds(2), Seconds(3)).value(), 1670.0);
  EXPECT_DOUBLE_EQ(device_energy(gpu, Seconds(0), Seconds(0)).value(), 0.0);
  const EnergyEstimate e = estimate_device_energy(gpu, Seconds(0.5), Seconds(0));
  EXPECT_DOUBLE_EQ(e.joules.value(), 350.0);
  EXPECT_EQ(e.source, EnergySource::kEstimated);
  EXPECT_NE(e.note.find("upper bound"), std::string::npos);
  EXPECT_EQ(energy_source_name(EnergySource::kMeasuredNvml), "nvml");
  EXPECT_THROW(device_energy(gpu, Seconds(-1), Seconds(0)), Error);
}

}  // namespace
}  // namespace partita

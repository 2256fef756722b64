#include "partita/hardware/nvml.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

TEST(Nvml, AbsentLibraryIsReportedNotThrown) {
  const Nvml nvml("libpartita-no-such-nvml.so.1");
  EXPECT_FALSE(nvml.available());
  EXPECT_NE(nvml.error().find("NVML not available"), std::string::npos);
  EXPECT_NE(nvml.error().find("libpartita-no-such-nvml.so.1"), std::string::npos) << nvml.error();
  EXPECT_EQ(nvml.device_count(), 0);
  EXPECT_FALSE(nvml.power_usage(0).has_value());
  EXPECT_FALSE(nvml.total_energy(0).has_value());
  EXPECT_THROW(nvml.device_info(0), Error);
}

TEST(Nvml, LibraryWithoutNvmlSymbols) {
  const Nvml nvml("libc.so.6");  // loads, but is not NVML
  EXPECT_FALSE(nvml.available());
  EXPECT_NE(nvml.error().find("lacks"), std::string::npos) << nvml.error();
}

TEST(Nvml, DefaultLibraryEitherWorksOrSaysWhy) {
  const Nvml nvml;
  if (nvml.available()) {
    EXPECT_GE(nvml.device_count(), 1);
    EXPECT_FALSE(nvml.device_info(0).name.empty());
    EXPECT_GT(nvml.device_info(0).memory_total.value(), 0);
  } else {
    EXPECT_FALSE(nvml.error().empty());
  }
}

TEST(Nvml, FakeLibraryFigures) {
  const Nvml nvml(PARTITA_FAKE_NVML);
  ASSERT_TRUE(nvml.available()) << nvml.error();
  EXPECT_EQ(nvml.error(), "");
  EXPECT_EQ(nvml.device_count(), 2);
  const NvmlDeviceInfo info = nvml.device_info(1);
  EXPECT_EQ(info.index, 1);
  EXPECT_EQ(info.name, "Fake GPU 1");
  EXPECT_EQ(info.memory_total.value(), 80LL << 30);
  EXPECT_EQ(info.memory_free.value(), 70LL << 30);
  EXPECT_DOUBLE_EQ(info.power_limit.value(), 700.0);
  EXPECT_DOUBLE_EQ(nvml.power_usage(0)->value(), 123.456);
  EXPECT_DOUBLE_EQ(nvml.total_energy(0)->value(), 5000.0);
  EXPECT_FALSE(nvml.total_energy(1).has_value());  // "not supported" on GPU 1
  EXPECT_FALSE(nvml.power_usage(7).has_value());
  EXPECT_THROW(nvml.device_info(2), Error);
}

}  // namespace
}  // namespace partita

#include <gtest/gtest.h>
#include <stdlib.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "partita/torch_bridge/memory_meter.h"

namespace partita {
namespace {

// PARTITA_PEAK_ALLOCATIONS is read when the meter is installed: set before any test runs (a test binary of
// its own, so the other meter tests run without the trace).
const bool kTraceRequested = setenv("PARTITA_PEAK_ALLOCATIONS", "1", 1) == 0;

std::string peak_report(const MemoryMeter& meter) {
  std::FILE* f = std::tmpfile();
  meter.write_peak_allocations(f);
  std::rewind(f);
  std::string text;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, f)) > 0;) text.append(buffer, n);
  std::fclose(f);
  return text;
}

// 4 MiB and 1 MiB alive, the 1 MiB freed, then 2 MiB: the highest point holds the 4 and the 2 MiB tensors
// (6144 KiB, two storages made by the same kernel on this thread), not the freed one.
TEST(MemoryMeterPeakTrace, ReportsTheStoragesAliveAtTheHighestPoint) {
  ASSERT_TRUE(kTraceRequested);
  MemoryMeter& meter = MemoryMeter::install();
  ASSERT_TRUE(MemoryMeter::tracing_peak());
  meter.reset_peak();
  torch::Tensor a = torch::empty({1 << 20});
  torch::Tensor b = torch::empty({1 << 18});
  b = torch::Tensor();
  torch::Tensor c = torch::empty({1 << 19});
  const std::string report = peak_report(meter);
  EXPECT_NE(report.find("6144.0 KiB     2 x  thread"), std::string::npos) << report;
  EXPECT_NE(report.find("at::native::empty_cpu"), std::string::npos) << report;
  EXPECT_EQ(report.find("7168.0 KiB"), std::string::npos) << report;
  // A reset starts from what is alive now.
  a = torch::Tensor();
  meter.reset_peak();
  EXPECT_NE(peak_report(meter).find("2048.0 KiB     1 x  thread"), std::string::npos) << peak_report(meter);
}

}  // namespace
}  // namespace partita

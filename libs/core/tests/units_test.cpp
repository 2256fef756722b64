#include "partita/core/units.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "partita/core/format.h"

namespace partita {

TEST(Units, ArithmeticKeepsUnits) {
  const Bytes a(1024), b(3072);
  EXPECT_EQ((a + b).value(), 4096);
  EXPECT_DOUBLE_EQ(b / a, 3.0);
  const Seconds t = Flops(2e9) / FlopsPerSecond(1e9);
  EXPECT_DOUBLE_EQ(t.value(), 2.0);
  const Seconds copy = Bytes(1'000'000) / BytesPerSecond(1e6);
  EXPECT_DOUBLE_EQ(copy.value(), 1.0);
  EXPECT_DOUBLE_EQ((Watts(250) * Seconds(2)).value(), 500.0);
  EXPECT_LT(milliseconds(1), milliseconds(2));
}

TEST(Units, Formatting) {
  EXPECT_EQ(format_bytes(Bytes(512)), "512 B");
  EXPECT_EQ(format_bytes(Bytes(3 * 1024 * 1024 / 2)), "1.50 MiB");
  EXPECT_EQ(format_flops(Flops(3.64e9)), "3.64 GFLOP");
  EXPECT_EQ(format_seconds(milliseconds(12.345)), "12.35 ms");
  EXPECT_EQ(format_count(11.69e6), "11.69 M");
}

TEST(Errors, CheckThrowsWithMessage) {
  try {
    const int batch = -1;
    PARTITA_CHECK(batch > 0, "batch must be positive, got ", batch, "; pass a positive size");
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "batch must be positive, got -1; pass a positive size");
  }
  EXPECT_THROW(PARTITA_ASSERT(1 == 2, "math"), InternalError);
  EXPECT_NO_THROW(PARTITA_CHECK(true, "never"));
}

}  // namespace partita

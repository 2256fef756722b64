#include "partita/hardware/quantity_parse.h"

#include <gtest/gtest.h>

namespace partita {
namespace {

TEST(ParseBytes, DecimalAndBinary) {
  EXPECT_EQ(parse_bytes("80 GB")->value(), 80'000'000'000LL);
  EXPECT_EQ(parse_bytes("80 GiB")->value(), 80LL << 30);
  EXPECT_EQ(parse_bytes("1.5KiB")->value(), 1536);
  EXPECT_EQ(parse_bytes("2 TiB")->value(), 2LL << 40);
  EXPECT_EQ(parse_bytes("512 B")->value(), 512);
  EXPECT_FALSE(parse_bytes("80"));
  EXPECT_FALSE(parse_bytes("80 gb"));  // case matters
  EXPECT_FALSE(parse_bytes("-1 GB"));
  EXPECT_FALSE(parse_bytes("GB"));
}

TEST(ParseBytesPerSecond, BytesAndBits) {
  EXPECT_DOUBLE_EQ(parse_bytes_per_second("3.35 TB/s")->value(), 3.35e12);
  EXPECT_DOUBLE_EQ(parse_bytes_per_second("900 GB/s")->value(), 900e9);
  EXPECT_DOUBLE_EQ(parse_bytes_per_second("400 Gbit/s")->value(), 50e9);
  EXPECT_DOUBLE_EQ(parse_bytes_per_second("25 Gbit/s")->value(), 3.125e9);
  EXPECT_DOUBLE_EQ(parse_bytes_per_second("1 GiB/s")->value(), 1073741824.0);
  EXPECT_FALSE(parse_bytes_per_second("900 GB"));
  EXPECT_FALSE(parse_bytes_per_second("900 Gb/s"));
}

TEST(ParseFlops, Spellings) {
  EXPECT_DOUBLE_EQ(parse_flops_per_second("989 TFLOP/s")->value(), 989e12);
  EXPECT_DOUBLE_EQ(parse_flops_per_second("19.5 TFLOPS")->value(), 19.5e12);
  EXPECT_DOUBLE_EQ(parse_flops_per_second("333 GFLOP/s")->value(), 333e9);
  EXPECT_FALSE(parse_flops_per_second("989 T"));
}

TEST(ParseWattsAndSeconds, Units) {
  EXPECT_DOUBLE_EQ(parse_watts("700 W")->value(), 700.0);
  EXPECT_DOUBLE_EQ(parse_watts("1.2 kW")->value(), 1200.0);
  EXPECT_DOUBLE_EQ(parse_seconds("2 us")->value(), 2e-6);
  EXPECT_DOUBLE_EQ(parse_seconds("2 \xC2\xB5s")->value(), 2e-6);
  EXPECT_DOUBLE_EQ(parse_seconds("1.5 ms")->value(), 1.5e-3);
  EXPECT_DOUBLE_EQ(parse_seconds("300 ns")->value(), 3e-7);
  EXPECT_DOUBLE_EQ(parse_seconds(" 1 s ")->value(), 1.0);
  EXPECT_FALSE(parse_seconds("2"));
  EXPECT_FALSE(parse_watts("700 J"));
}

}  // namespace
}  // namespace partita

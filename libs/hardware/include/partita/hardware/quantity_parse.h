#pragma once
// Parsing quantities written with units in configuration files: "989 TFLOP/s", "80 GiB", "3.35 TB/s",
// "400 Gbit/s", "700 W", "2 us". A number (decimal or exponent form), optional spaces, then a unit. Units are
// case-sensitive (MB is 10^6 bytes, MiB is 2^20; Gbit/s is bits, GB/s bytes). Each parser returns nullopt for
// text that is not a non-negative number with one of its units; callers add the file, line and field to the
// message. The *_units_help strings list accepted units for those messages. Pure and thread-safe.
#include <optional>
#include <string_view>

#include "partita/core/units.h"

namespace partita {

// B, kB/KB, MB, GB, TB (powers of 10) and KiB, MiB, GiB, TiB (powers of 2).
std::optional<Bytes> parse_bytes(std::string_view text);
// Any byte unit above followed by "/s", or bits: bit/s, kbit/s, Mbit/s, Gbit/s, Tbit/s (divided by 8).
std::optional<BytesPerSecond> parse_bytes_per_second(std::string_view text);
// FLOP/s, kFLOP/s, MFLOP/s, GFLOP/s, TFLOP/s, PFLOP/s; the spelling "TFLOPS" is accepted too.
std::optional<FlopsPerSecond> parse_flops_per_second(std::string_view text);
// mW, W, kW.
std::optional<Watts> parse_watts(std::string_view text);
// ns, us (or µs), ms, s.
std::optional<Seconds> parse_seconds(std::string_view text);

inline constexpr std::string_view kBytesExample = "80 GiB";
inline constexpr std::string_view kBytesPerSecondExample = "3.35 TB/s";
inline constexpr std::string_view kFlopsPerSecondExample = "989 TFLOP/s";
inline constexpr std::string_view kWattsExample = "700 W";
inline constexpr std::string_view kSecondsExample = "2 us";

}  // namespace partita

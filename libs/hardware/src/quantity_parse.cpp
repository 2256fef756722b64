#include "partita/hardware/quantity_parse.h"

#include <array>
#include <charconv>
#include <cmath>
#include <string>

namespace partita {

namespace {

struct Unit {
  std::string_view symbol;
  double factor;
};

struct Split {
  double number;
  std::string_view unit;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "3.35 TB/s" -> {3.35, "TB/s"}. nullopt when there is no leading non-negative finite number.
std::optional<Split> split_number(std::string_view text) {
  text = trim(text);
  double v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || !std::isfinite(v) || v < 0) return std::nullopt;
  return Split{v, trim(text.substr(static_cast<size_t>(ptr - text.data())))};
}

template <size_t N>
std::optional<double> parse_with(std::string_view text, const std::array<Unit, N>& units) {
  const auto split = split_number(text);
  if (!split) return std::nullopt;
  for (const auto& u : units) {
    if (u.symbol == split->unit) return split->number * u.factor;
  }
  return std::nullopt;
}

constexpr double kKi = 1024.0;
constexpr std::array<Unit, 10> kByteUnits = {{{"B", 1},
                                              {"kB", 1e3},
                                              {"KB", 1e3},
                                              {"MB", 1e6},
                                              {"GB", 1e9},
                                              {"TB", 1e12},
                                              {"KiB", kKi},
                                              {"MiB", kKi* kKi},
                                              {"GiB", kKi* kKi* kKi},
                                              {"TiB", kKi* kKi* kKi* kKi}}};

}  // namespace

std::optional<Bytes> parse_bytes(std::string_view text) {
  const auto v = parse_with(text, kByteUnits);
  if (!v) return std::nullopt;
  return Bytes(static_cast<int64_t>(std::llround(*v)));
}

std::optional<BytesPerSecond> parse_bytes_per_second(std::string_view text) {
  const auto split = split_number(text);
  if (!split || !split->unit.ends_with("/s")) return std::nullopt;
  const std::string_view unit = split->unit.substr(0, split->unit.size() - 2);
  constexpr std::array<Unit, 5> kBitUnits = {
      {{"bit", 0.125}, {"kbit", 1e3 / 8}, {"Mbit", 1e6 / 8}, {"Gbit", 1e9 / 8}, {"Tbit", 1e12 / 8}}};
  for (const auto& u : kBitUnits) {
    if (u.symbol == unit) return BytesPerSecond(split->number * u.factor);
  }
  const auto bytes = parse_bytes("1 " + std::string(unit));
  if (!bytes) return std::nullopt;
  return BytesPerSecond(split->number * static_cast<double>(bytes->value()));
}

std::optional<FlopsPerSecond> parse_flops_per_second(std::string_view text) {
  constexpr std::array<Unit, 12> kUnits = {{{"FLOP/s", 1},
                                            {"kFLOP/s", 1e3},
                                            {"MFLOP/s", 1e6},
                                            {"GFLOP/s", 1e9},
                                            {"TFLOP/s", 1e12},
                                            {"PFLOP/s", 1e15},
                                            {"FLOPS", 1},
                                            {"kFLOPS", 1e3},
                                            {"MFLOPS", 1e6},
                                            {"GFLOPS", 1e9},
                                            {"TFLOPS", 1e12},
                                            {"PFLOPS", 1e15}}};
  const auto v = parse_with(text, kUnits);
  if (!v) return std::nullopt;
  return FlopsPerSecond(*v);
}

std::optional<Watts> parse_watts(std::string_view text) {
  constexpr std::array<Unit, 3> kUnits = {{{"mW", 1e-3}, {"W", 1}, {"kW", 1e3}}};
  const auto v = parse_with(text, kUnits);
  if (!v) return std::nullopt;
  return Watts(*v);
}

std::optional<Seconds> parse_seconds(std::string_view text) {
  constexpr std::array<Unit, 5> kUnits = {
      {{"ns", 1e-9}, {"us", 1e-6}, {"\xC2\xB5s", 1e-6}, {"ms", 1e-3}, {"s", 1}}};
  const auto v = parse_with(text, kUnits);
  if (!v) return std::nullopt;
  return Seconds(*v);
}

}  // namespace partita

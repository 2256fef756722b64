#include "partita/core/format.h"

#include <cmath>

#include <fmt/format.h>

namespace partita {

namespace {
std::string scaled(double v, double base, const char* const* suffixes, int n, const char* unit) {
  int i = 0;
  double a = std::fabs(v);
  while (a >= base && i + 1 < n) {
    a /= base;
    v /= base;
    ++i;
  }
  return fmt::format("{:.{}f} {}{}", v, i == 0 && std::floor(v) == v ? 0 : 2, suffixes[i], unit);
}
}  // namespace

std::string format_bytes(Bytes b) {
  static const char* const kSuffix[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi"};
  return scaled(static_cast<double>(b.value()), 1024.0, kSuffix, 6, "B");
}

std::string format_flops(Flops f) {
  static const char* const kSuffix[] = {"", "K", "M", "G", "T", "P", "E"};
  return scaled(f.value(), 1000.0, kSuffix, 7, "FLOP");
}

std::string format_count(double n) {
  static const char* const kSuffix[] = {"", "K", "M", "G", "T"};
  std::string s = scaled(n, 1000.0, kSuffix, 5, "");
  // Plain counts below 1000 have no suffix: trim the separator.
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

std::string format_seconds(Seconds s) {
  const double v = s.value();
  if (v >= 1.0) return fmt::format("{:.2f} s", v);
  if (v >= 1e-3) return fmt::format("{:.2f} ms", v * 1e3);
  return fmt::format("{:.1f} us", v * 1e6);
}

}  // namespace partita

#include "spin_condition.h"

#include <cstdlib>
#include <string>

#include "partita/core/error.h"

namespace partita::detail {

namespace {

constexpr long kDefaultSpinUs = 50;
constexpr long kMostSpinUs = 10000;

}  // namespace

std::chrono::microseconds parse_spin_window(const char* text) {
  if (text == nullptr || *text == '\0') return std::chrono::microseconds(kDefaultSpinUs);
  const std::string s(text);
  const bool digits = s.size() <= 6 && s.find_first_not_of("0123456789") == std::string::npos;
  const long value = digits ? std::stol(s) : -1;
  PARTITA_CHECK(value >= 0 && value <= kMostSpinUs, "PARTITA_SPIN_US='", s,
                "' is not a spin window: give the microseconds an engine worker spins before it sleeps, a "
                "whole number from 0 (sleep at once) to ",
                kMostSpinUs, ", or unset it for ", kDefaultSpinUs);
  return std::chrono::microseconds(value);
}

std::chrono::microseconds spin_window() {
  static const std::chrono::microseconds window = parse_spin_window(std::getenv("PARTITA_SPIN_US"));
  return window;
}

}  // namespace partita::detail

#pragma once
// Unit types: a quantity carries its unit in its type, so seconds cannot be added to bytes and a function
// signature says what it takes. Rep is int64 for countable things (bytes), double for measured ones.
#include <compare>
#include <cstdint>
#include <ostream>

namespace partita {

template <typename Tag, typename Rep>
class Quantity {
 public:
  using rep = Rep;
  constexpr Quantity() = default;
  constexpr explicit Quantity(Rep v) : v_(v) {}
  constexpr Rep value() const { return v_; }

  constexpr Quantity& operator+=(Quantity o) {
    v_ += o.v_;
    return *this;
  }
  constexpr Quantity& operator-=(Quantity o) {
    v_ -= o.v_;
    return *this;
  }
  friend constexpr Quantity operator+(Quantity a, Quantity b) { return Quantity(a.v_ + b.v_); }
  friend constexpr Quantity operator-(Quantity a, Quantity b) { return Quantity(a.v_ - b.v_); }
  friend constexpr Quantity operator*(Quantity a, double k) { return Quantity(static_cast<Rep>(a.v_ * k)); }
  friend constexpr Quantity operator*(double k, Quantity a) { return a * k; }
  friend constexpr Quantity operator/(Quantity a, double k) { return Quantity(static_cast<Rep>(a.v_ / k)); }
  // The ratio of two quantities of one unit is a plain number.
  friend constexpr double operator/(Quantity a, Quantity b) {
    return static_cast<double>(a.v_) / static_cast<double>(b.v_);
  }
  friend constexpr auto operator<=>(Quantity a, Quantity b) = default;

 private:
  Rep v_{};
};

using Bytes = Quantity<struct BytesTag, int64_t>;
using Seconds = Quantity<struct SecondsTag, double>;
using Flops = Quantity<struct FlopsTag, double>;  // floating-point operations (2 per multiply-add)
using Joules = Quantity<struct JoulesTag, double>;
using Watts = Quantity<struct WattsTag, double>;
using FlopsPerSecond = Quantity<struct FlopsPerSecondTag, double>;
using BytesPerSecond = Quantity<struct BytesPerSecondTag, double>;

// How GoogleTest prints a quantity in a failure message (found by argument-dependent lookup): its value,
// not its raw bytes.
template <typename Tag, typename Rep>
void PrintTo(const Quantity<Tag, Rep>& q, std::ostream* os) {
  *os << q.value();
}

constexpr Seconds milliseconds(double ms) { return Seconds(ms * 1e-3); }
constexpr double to_milliseconds(Seconds s) { return s.value() * 1e3; }

// Rates and products that change unit.
constexpr Seconds operator/(Flops f, FlopsPerSecond r) { return Seconds(f.value() / r.value()); }
constexpr Seconds operator/(Bytes b, BytesPerSecond r) {
  return Seconds(static_cast<double>(b.value()) / r.value());
}
constexpr Joules operator*(Watts w, Seconds s) { return Joules(w.value() * s.value()); }
constexpr Joules operator*(Seconds s, Watts w) { return w * s; }

}  // namespace partita

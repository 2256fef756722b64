#include "partita/search/collective_time.h"

#include <algorithm>
#include <bit>

namespace partita {

Seconds fast_allreduce_time(Bytes n, int p, const LinkSpec& link) {
  if (p <= 1) return Seconds(0);
  const double alpha = link.latency.value();
  const double transfer = static_cast<double>(n.value()) / link.bandwidth.value();
  const double ring = 2.0 * (p - 1) * alpha + 2.0 * (p - 1) / p * transfer;
  const double tree = 2.0 * std::bit_width(static_cast<unsigned>(p - 1)) * (alpha + transfer);
  return Seconds(std::min(ring, tree));
}

}  // namespace partita

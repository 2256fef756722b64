#include "partita/cost/link_fit.h"

#include <algorithm>
#include <set>

#include "partita/core/error.h"

namespace partita {

LinkSpec fit_allreduce_link(const std::vector<TimedTransfer>& samples, int p, const std::string& name,
                            const std::string& source) {
  PARTITA_CHECK(p >= 2, "fit_allreduce_link: p = ", p, "; an all-reduce needs at least 2 processes");
  std::set<int64_t> sizes;
  for (const auto& s : samples) sizes.insert(s.bytes.value());
  PARTITA_CHECK(sizes.size() >= 2, "fit_allreduce_link: ", sizes.size(),
                " distinct message size(s); measure at least two sizes");
  // Weighted least squares with weights 1/t^2 (relative errors): plain least squares lets the largest
  // message decide everything and leaves the latency to noise.
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const auto& s : samples) {
    PARTITA_CHECK(s.time.value() > 0, "fit_allreduce_link: a sample of ", s.bytes.value(), " bytes took ",
                  s.time.value(), " s; times must be positive");
    const double x = static_cast<double>(s.bytes.value()), y = s.time.value(), w = 1.0 / (y * y);
    sw += w;
    sx += w * x;
    sy += w * y;
    sxx += w * x * x;
    sxy += w * x * y;
  }
  const double slope = (sw * sxy - sx * sy) / (sw * sxx - sx * sx);
  const double intercept = (sy - slope * sx) / sw;
  PARTITA_CHECK(slope > 0, "fit_allreduce_link: all-reduce time does not grow with size (slope ", slope,
                " s/byte): the measurement is broken; rerun on a quieter machine");
  const double steps = 2.0 * (p - 1);
  LinkSpec link;
  link.name = name;
  link.latency = Seconds(std::max(0.0, intercept) / steps);
  link.bandwidth = BytesPerSecond(steps / (p * slope));
  link.source = source;
  return link;
}

}  // namespace partita

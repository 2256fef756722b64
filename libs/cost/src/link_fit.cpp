#include "partita/cost/link_fit.h"

#include <algorithm>
#include <set>

#include "partita/core/error.h"

namespace partita {

namespace {

struct Line {
  double intercept = 0;  // seconds
  double slope = 0;      // seconds per byte
};

// Weighted least squares with weights 1/t^2 (relative errors): plain least squares lets the largest message
// decide everything and leaves the latency to noise. `what` names the caller in errors.
Line fit_line(const std::vector<TimedTransfer>& samples, const char* what) {
  std::set<int64_t> sizes;
  for (const auto& s : samples) sizes.insert(s.bytes.value());
  PARTITA_CHECK(sizes.size() >= 2, what, ": ", sizes.size(),
                " distinct message size(s); measure at least two sizes");
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const auto& s : samples) {
    PARTITA_CHECK(s.time.value() > 0, what, ": a sample of ", s.bytes.value(), " bytes took ", s.time.value(),
                  " s; times must be positive");
    const double x = static_cast<double>(s.bytes.value()), y = s.time.value(), w = 1.0 / (y * y);
    sw += w;
    sx += w * x;
    sy += w * y;
    sxx += w * x * x;
    sxy += w * x * y;
  }
  Line line;
  line.slope = (sw * sxy - sx * sy) / (sw * sxx - sx * sx);
  line.intercept = (sy - line.slope * sx) / sw;
  PARTITA_CHECK(line.slope > 0, what, ": time does not grow with size (slope ", line.slope,
                " s/byte): the measurement is broken; rerun on a quieter machine");
  return line;
}

}  // namespace

LinkSpec fit_allreduce_link(const std::vector<TimedTransfer>& samples, int p, const std::string& name,
                            const std::string& source) {
  PARTITA_CHECK(p >= 2, "fit_allreduce_link: p = ", p, "; an all-reduce needs at least 2 processes");
  const Line line = fit_line(samples, "fit_allreduce_link");
  const double steps = 2.0 * (p - 1);
  LinkSpec link;
  link.name = name;
  link.latency = Seconds(std::max(0.0, line.intercept) / steps);
  link.bandwidth = BytesPerSecond(steps / (p * line.slope));
  link.source = source;
  return link;
}

LinkSpec fit_message_link(const std::vector<TimedTransfer>& samples, const std::string& name,
                          const std::string& source) {
  const Line line = fit_line(samples, "fit_message_link");
  return LinkSpec{name, Seconds(std::max(0.0, line.intercept)), BytesPerSecond(1.0 / line.slope), source};
}

}  // namespace partita

#include "partita/cost/op_class_fit.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "partita/core/error.h"

namespace partita {

namespace {

// Seconds per FLOP (u) and per byte (v): the fit searches these, 0 meaning "no such term".
struct Slopes {
  double u = 0;
  double v = 0;
  bool additive = false;  // work = F u + B v instead of max(F u, B v)
};

double work(const TimedOp& x, const Slopes& s) {
  const double f = x.flops.value() * s.u, b = static_cast<double>(x.bytes.value()) * s.v;
  return s.additive ? f + b : std::max(f, b);
}

struct Scored {
  Slopes slopes;
  double fixed = 0;
  double error = 0;  // sum of squared relative errors
};

Scored score(const std::vector<TimedOp>& samples, Slopes s) {
  // For fixed slopes the relative-error optimum of `fixed` is sum((t - c) / t^2) / sum(1 / t^2).
  double num = 0, den = 0;
  for (const auto& x : samples) {
    const double t = x.time.value();
    const double c = work(x, s);
    num += (t - c) / (t * t);
    den += 1.0 / (t * t);
  }
  Scored out{s, std::max(0.0, num / den), 0};
  for (const auto& x : samples) {
    const double t = x.time.value();
    const double c = work(x, s);
    const double r = (out.fixed + c - t) / t;
    out.error += r * r;
  }
  return out;
}

// 0 (no term) plus `points` values spaced evenly in log space over [lo, hi]; just {0} when hi is 0.
std::vector<double> log_grid(double lo, double hi, int points) {
  std::vector<double> grid{0.0};
  if (hi <= 0) return grid;
  for (int i = 0; i < points; ++i) {
    grid.push_back(lo * std::pow(hi / lo, static_cast<double>(i) / (points - 1)));
  }
  return grid;
}

// Around a best value: `points` values from x / factor to x * factor (0 stays 0: the term is out).
std::vector<double> around(double x, double factor, int points) {
  if (x <= 0) return {0.0};
  return log_grid(x / factor, x * factor, points);
}

Scored search(const std::vector<TimedOp>& samples, const std::vector<double>& us,
              const std::vector<double>& vs, bool additive, Scored best) {
  for (double u : us) {
    for (double v : vs) {
      const Scored s = score(samples, {u, v, additive});
      // Strictly better only: on a tie the earlier candidate (0 first, "no term") is kept.
      if (s.error < best.error * (1 - 1e-12)) best = s;
    }
  }
  return best;
}

}  // namespace

namespace {

// The grid search of the class model over all of `samples` (checked by the caller).
Scored fit_slopes(const std::vector<TimedOp>& samples, bool additive) {
  // The largest useful slope makes the work term alone reach the slowest sample's time per unit of work;
  // anything steeper overshoots every sample. Rates 1000x faster than the fastest sample cover the rest.
  double u_hi = 0, v_hi = 0, u_lo = 0, v_lo = 0;
  for (const auto& x : samples) {
    if (x.flops.value() > 0) {
      const double r = x.time.value() / x.flops.value();
      u_hi = std::max(u_hi, r);
      u_lo = u_lo > 0 ? std::min(u_lo, r) : r;
    }
    if (x.bytes.value() > 0) {
      const double r = x.time.value() / static_cast<double>(x.bytes.value());
      v_hi = std::max(v_hi, r);
      v_lo = v_lo > 0 ? std::min(v_lo, r) : r;
    }
  }
  constexpr int kPoints = 41;
  constexpr double kRange = 1000;
  Scored best = score(samples, {0, 0, additive});
  best = search(samples, log_grid(u_lo / kRange, u_hi, kPoints), log_grid(v_lo / kRange, v_hi, kPoints),
                additive, best);
  // Refine: each pass searches +-1 step around the best point on a grid four times finer.
  double factor_u = u_hi > 0 ? std::pow(u_hi * kRange / u_lo, 1.0 / (kPoints - 1)) : 1;
  double factor_v = v_hi > 0 ? std::pow(v_hi * kRange / v_lo, 1.0 / (kPoints - 1)) : 1;
  for (int pass = 0; pass < 6; ++pass) {
    best = search(samples, around(best.slopes.u, factor_u, 9), around(best.slopes.v, factor_v, 9), additive,
                  best);
    factor_u = std::pow(factor_u, 0.25);
    factor_v = std::pow(factor_v, 0.25);
  }
  return best;
}

double relative_error(const Scored& fit, const TimedOp& x) {
  return (fit.fixed + work(x, fit.slopes) - x.time.value()) / x.time.value();
}

// The better of the two forms on `samples`; the overlapping one (max) on a tie.
Scored fit_best_form(const std::vector<TimedOp>& samples) {
  const Scored overlapped = fit_slopes(samples, false);
  const Scored additive = fit_slopes(samples, true);
  return additive.error < overlapped.error * (1 - 1e-9) ? additive : overlapped;
}

}  // namespace

OpClassFit fit_op_class(const std::vector<TimedOp>& samples) {
  PARTITA_CHECK(samples.size() >= 2, "fit_op_class: ", samples.size(),
                " sample(s); measure the class at two sizes at least");
  bool any_work = false;
  for (const auto& x : samples) {
    PARTITA_CHECK(x.time.value() > 0, "fit_op_class: a sample of ", x.flops.value(), " FLOP and ",
                  x.bytes.value(), " bytes took ", x.time.value(), " s; times must be positive");
    any_work = any_work || x.flops.value() > 0 || x.bytes.value() > 0;
  }
  PARTITA_CHECK(any_work, "fit_op_class: no sample has any work (all FLOPs and bytes are 0)");
  Scored best = fit_best_form(samples);
  std::vector<TimedOp> kept = samples;
  // One round of outlier rejection: a sample far off a fit that explains the others (a kernel that took
  // another code path at that size, a scheduler stall of a spinning thread pool) would bend the class's
  // model for every op. Dropped: errors above max(50 %, 3 x the median error), at most a quarter of the
  // samples, from 4 samples up.
  if (samples.size() >= 4) {
    std::vector<std::pair<double, size_t>> errors;
    for (size_t i = 0; i < samples.size(); ++i)
      errors.push_back({std::abs(relative_error(best, samples[i])), i});
    std::vector<double> sorted;
    for (const auto& e : errors) sorted.push_back(e.first);
    std::sort(sorted.begin(), sorted.end());
    const double threshold = std::max(0.5, 3 * sorted[sorted.size() / 2]);
    std::sort(errors.rbegin(), errors.rend());
    std::set<size_t> dropped;
    for (const auto& [error, i] : errors) {
      if (error <= threshold || dropped.size() >= samples.size() / 4) break;
      dropped.insert(i);
    }
    if (!dropped.empty()) {
      kept.clear();
      for (size_t i = 0; i < samples.size(); ++i) {
        if (!dropped.contains(i)) kept.push_back(samples[i]);
      }
      best = fit_best_form(kept);
    }
  }
  OpClassFit fit;
  fit.fixed = Seconds(best.fixed);
  fit.flops_rate = FlopsPerSecond(best.slopes.u > 0 ? 1.0 / best.slopes.u : 0.0);
  fit.bandwidth = BytesPerSecond(best.slopes.v > 0 ? 1.0 / best.slopes.v : 0.0);
  fit.additive = best.slopes.additive;
  fit.samples = static_cast<int>(kept.size());
  fit.rms_relative_error = std::sqrt(best.error / static_cast<double>(kept.size()));
  return fit;
}

Seconds op_class_fit_time(const OpClassFit& fit, Flops flops, Bytes bytes) {
  Seconds compute(0), traffic(0);
  if (fit.flops_rate.value() > 0 && flops.value() > 0) compute = flops / fit.flops_rate;
  if (fit.bandwidth.value() > 0 && bytes.value() > 0) traffic = bytes / fit.bandwidth;
  return fit.fixed + (fit.additive ? compute + traffic : std::max(compute, traffic));
}

std::map<std::string, OpClassFit> fit_op_classes(const std::vector<OpClassSample>& samples, int threads,
                                                 FitPass pass) {
  std::map<std::string, std::vector<TimedOp>> by_class;
  for (const auto& s : samples) {
    if (s.threads != threads) continue;
    const Seconds t = pass == FitPass::kForward ? s.time : s.backward;
    if (t.value() > 0) by_class[s.op_class].push_back(TimedOp{s.flops, s.bytes, t});
  }
  std::map<std::string, OpClassFit> fits;
  for (const auto& [name, ops] : by_class) {
    if (ops.size() >= 2) fits[name] = fit_op_class(ops);
  }
  return fits;
}

}  // namespace partita

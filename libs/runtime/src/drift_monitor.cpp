#include "partita/runtime/drift_monitor.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/core/statistics.h"

namespace partita {

void DriftOptions::validate() const {
  PARTITA_CHECK(reference_steps >= 1, "drift reference_steps must be at least 1, got ", reference_steps);
  PARTITA_CHECK(threshold > 1.0 && std::isfinite(threshold), "drift threshold must be above 1, got ",
                threshold);
  PARTITA_CHECK(patience >= 1, "drift patience must be at least 1, got ", patience);
}

DriftMonitor::DriftMonitor(std::vector<std::string> devices, std::vector<Seconds> predicted_busy,
                           DriftOptions options)
    : devices_(std::move(devices)), options_(options) {
  options_.validate();
  restart(std::move(predicted_busy));
}

void DriftMonitor::restart(std::vector<Seconds> predicted_busy) {
  PARTITA_CHECK(predicted_busy.size() == devices_.size(), "drift monitor: ", predicted_busy.size(),
                " predictions for ", devices_.size(), " devices");
  for (size_t i = 0; i < devices_.size(); ++i) {
    PARTITA_CHECK(predicted_busy[i].value() > 0, "drift monitor: predicted busy time of ", devices_[i],
                  " must be positive, got ", predicted_busy[i].value(), " s");
  }
  predicted_ = std::move(predicted_busy);
  warmup_ratios_.clear();
  reference_.clear();
  streak_.clear();
}

std::optional<DriftReport> DriftMonitor::observe(const std::vector<Seconds>& measured_busy) {
  const size_t n = devices_.size();
  PARTITA_CHECK(measured_busy.size() == n, "drift monitor: ", measured_busy.size(), " measurements for ", n,
                " devices");
  std::vector<double> ratio(n);
  for (size_t i = 0; i < n; ++i) ratio[i] = measured_busy[i].value() / predicted_[i].value();
  if (reference_.empty()) {
    warmup_ratios_.push_back(ratio);
    if (static_cast<int>(warmup_ratios_.size()) == options_.reference_steps) {
      reference_.resize(n);
      for (size_t i = 0; i < n; ++i) {
        std::vector<double> column;
        for (const auto& step : warmup_ratios_) column.push_back(step[i]);
        reference_[i] = median_of(column);
      }
    }
    return std::nullopt;
  }
  std::vector<double> drift(n);
  for (size_t i = 0; i < n; ++i) drift[i] = reference_[i] > 0 ? ratio[i] / reference_[i] : 1.0;
  const double least = *std::min_element(drift.begin(), drift.end());
  if (least <= 0) {  // a device did nothing this step: nothing to compare
    streak_.clear();
    return std::nullopt;
  }
  for (double& d : drift) d /= least;
  if (*std::max_element(drift.begin(), drift.end()) < options_.threshold) {
    streak_.clear();
    return std::nullopt;
  }
  streak_.push_back(drift);
  if (static_cast<int>(streak_.size()) < options_.patience) return std::nullopt;

  DriftReport report;
  report.slowdown.resize(n);
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> column;
    for (const auto& step : streak_) column.push_back(step[i]);
    report.slowdown[i] = median_of(column);
  }
  const size_t worst = static_cast<size_t>(std::max_element(report.slowdown.begin(), report.slowdown.end()) -
                                           report.slowdown.begin());
  std::string others;
  for (size_t i = 0; i < n; ++i) {
    if (i != worst)
      others += fmt::format("{}{} {:.2f}x", others.empty() ? "" : ", ", devices_[i], report.slowdown[i]);
  }
  report.summary =
      fmt::format("{} {:.2f}x slower than at the plan's reference{} for {} steps", devices_[worst],
                  report.slowdown[worst], others.empty() ? "" : " (" + others + ")", options_.patience);
  restart(predicted_);
  return report;
}

}  // namespace partita

#include "partita/torch_bridge/timing.h"

#include <algorithm>
#include <chrono>

#include "partita/core/error.h"

namespace partita {

void TimingOptions::validate() const {
  PARTITA_CHECK(warmup >= 0 && min_repeats >= 0 && max_repeats >= 1 && min_repeats <= max_repeats,
                "timing options: warmup ", warmup, ", min_repeats ", min_repeats, ", max_repeats ",
                max_repeats, ": use warmup >= 0 and 0 <= min_repeats <= max_repeats, max_repeats >= 1");
}

TimingResult time_repeated(const std::function<void()>& fn, const TimingOptions& options,
                           const std::function<void()>& untimed_setup) {
  options.validate();
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < options.warmup; ++i) {
    if (untimed_setup) untimed_setup();
    fn();
    if (options.sync) options.sync();
  }
  std::vector<double> samples;
  double spent = 0;
  while (static_cast<int>(samples.size()) < options.max_repeats &&
         (static_cast<int>(samples.size()) < std::max(1, options.min_repeats) ||
          spent < options.budget.value())) {
    if (untimed_setup) {
      untimed_setup();
      if (options.sync) options.sync();  // the setup's device work must not run into the clock
    }
    const auto t0 = Clock::now();
    fn();
    if (options.sync) options.sync();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    samples.push_back(s);
    spent += s;
  }
  TimingResult r;
  r.repeats = static_cast<int>(samples.size());
  r.min = Seconds(*std::min_element(samples.begin(), samples.end()));
  r.median = Seconds(median_of(samples));
  return r;
}

}  // namespace partita

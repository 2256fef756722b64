#pragma once
// Timing of short pieces of work for microbenchmarks and the op profiler: warm-up runs, then repeats until
// either max_repeats or the time budget is reached (at least min_repeats), and the median. Medians resist
// the outliers a shared machine produces. Pure apart from running fn; thread-safe.
#include <functional>
#include <vector>

#include "partita/core/statistics.h"  // median_of
#include "partita/core/units.h"

namespace partita {

struct TimingOptions {
  int warmup = 2;
  int min_repeats = 3;
  int max_repeats = 50;
  Seconds budget{0.25};  // total time of the timed repeats, after which no new repeat starts
  // Called after each run and before the clock stops (e.g. a CUDA synchronize); may be empty.
  std::function<void()> sync;
  // Throws partita::Error for negative counts, min_repeats > max_repeats or max_repeats < 1.
  void validate() const;
};

struct TimingResult {
  Seconds median{0};
  Seconds min{0};
  int repeats = 0;
};

// Runs `fn` options.warmup times untimed, then repeatedly timed (see above). `untimed_setup`, when given,
// runs before every run of fn (warm-up and timed) outside the clock, e.g. to restore state that fn changes.
// Exceptions from fn or untimed_setup propagate.
TimingResult time_repeated(const std::function<void()>& fn, const TimingOptions& options,
                           const std::function<void()>& untimed_setup = {});

}  // namespace partita

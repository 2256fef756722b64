#pragma once
// Fitting an alpha-beta link to measured all-reduce times, or to one-way message times.
//
// Model: a ring all-reduce of n bytes among p processes takes 2(p-1) alpha + 2(p-1)/p * n / beta (comm.h).
// A least-squares line t = a + b n through the samples (weighted by 1/t^2, i.e. relative errors, so small
// messages fix the latency and large ones the bandwidth) gives alpha = a / (2(p-1)) and
// beta = 2(p-1) / (p b). Assumptions: the implementation behaves like a ring at every size (Gloo picks
// algorithms by size, so the fit is an average over them) and samples are medians of repeats. A negative
// intercept (noise at small sizes) is clamped to alpha = 0. Messages: a message of n bytes takes
// alpha + n / beta (comm.h's p2p_time), fit the same way. Pure, thread-safe.
#include <string>
#include <vector>

#include "partita/core/units.h"
#include "partita/hardware/device.h"

namespace partita {

struct TimedTransfer {
  Bytes bytes{0};
  Seconds time{0};
};

// Throws partita::Error when p < 2, fewer than two distinct sizes are given, or the slope is not positive
// (time does not grow with size: the measurement is broken).
LinkSpec fit_allreduce_link(const std::vector<TimedTransfer>& samples, int p, const std::string& name,
                            const std::string& source);

// One-way message times: alpha = the intercept, beta = 1 / slope. Throws
// partita::Error as fit_allreduce_link does.
LinkSpec fit_message_link(const std::vector<TimedTransfer>& samples, const std::string& name,
                          const std::string& source);

}  // namespace partita

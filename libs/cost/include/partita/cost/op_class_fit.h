#pragma once
// Fitting the calibrated roofline of one op class to microbenchmarks of generic ops of that class.
//
// Model (per class, per device and thread count):
//   time = fixed + max(flops / flops_rate, bytes / bandwidth)        (compute and traffic overlap), or
//   time = fixed + flops / flops_rate + bytes / bandwidth            (they do not: "additive")
// where flops and bytes (read + written) are counted as the graph library counts them for the op. `fixed` is
// what a call costs beyond its work (dispatch, output allocation, kernel/primitive setup, fork and join of
// the intra-op threads); the rates are what the class sustains at the sizes measured.
//
// Fit: least squares on relative errors, sum(((model_i - t_i) / t_i)^2), so microsecond ops fix `fixed` and
// large ones fix the rates. For given rates the best `fixed` has a closed form (clamped to >= 0); the rates
// are searched on a logarithmic grid that is refined around the best point. Both forms are fitted and the
// one with the smaller error on the class's samples is kept (the overlapping one on a tie): kernels that
// first reorder or pack their operands (oneDNN convolutions with plain-layout weights, BLAS packing) pay for
// traffic and arithmetic one after the other. A rate that does not help (no
// sample is bound by it) is reported as 0, "this term never binds": the cost model then leaves it out.
// Relative errors also bound the pull of a sample that ran far too slow (it counts at most 1); one round of
// outlier rejection then drops samples far off the fit (see fit_op_class), which `samples` of the result
// reflects. Assumptions: samples are medians of repeats; the class's kernels behave alike across sizes (one
// fixed cost, one rate per resource) — which is why depthwise/grouped convolutions are a class of their own.
// Pure, thread-safe.
#include <map>
#include <string>
#include <vector>

#include "partita/core/units.h"
#include "partita/hardware/device.h"
#include "partita/hardware/machine_profile.h"

namespace partita {

// One measured op: its work and its median time per call.
struct TimedOp {
  Flops flops{0};
  Bytes bytes{0};  // read + written
  Seconds time{0};
};

// The fitted model of `samples` (see above); from 4 samples up, samples whose relative error exceeds
// max(50 %, 3 x the median) — at most a quarter of them — are dropped and the rest refitted. Throws
// partita::Error when fewer than two samples are given, a time is not positive, or no sample has any work
// (flops and bytes all 0).
OpClassFit fit_op_class(const std::vector<TimedOp>& samples);

// The model's time for one op under `fit` (f32): fixed + max (or, when fit.additive, the sum) of
// flops / flops_rate and bytes / bandwidth, a term with rate 0 left out.
Seconds op_class_fit_time(const OpClassFit& fit, Flops flops, Bytes bytes);

// Which time of a sample a fit models: the forward, or the backward (with the forward's work as the work).
enum class FitPass { kForward, kBackward };

// One fit per op class among the samples measured at `threads` intra-op threads (for kBackward, those with a
// measured backward); classes with fewer than two such samples are left out.
std::map<std::string, OpClassFit> fit_op_classes(const std::vector<OpClassSample>& samples, int threads,
                                                 FitPass pass = FitPass::kForward);

}  // namespace partita

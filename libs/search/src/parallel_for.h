#pragma once
// Internal to the search library: independent planning work spread over the machine's cores.
#include <cstddef>
#include <functional>

namespace partita::detail {

// Runs body(i) once for every i in [0, n) on up to hardware_concurrency() threads, the calling thread
// included. body writes its result into the i-th place of something the caller owns, so the outcome does
// not depend on the thread count. The first exception any body throws is rethrown once every thread is done.
// A call made from inside a body (a plan per power-cap setting whose hybrid search is parallel too) runs
// serially on its thread: the outer call already has the cores.
void parallel_for(size_t n, const std::function<void(size_t)>& body);

}  // namespace partita::detail

#pragma once
// Allocation-free, check-free all-reduce time for the partitioning DPs' inner loops. Same formula as
// cost/comm.h's allreduce_time (min of ring and binary tree under alpha-beta); a test keeps them equal.
#include "partita/core/units.h"
#include "partita/hardware/device.h"

namespace partita {

Seconds fast_allreduce_time(Bytes n, int p, const LinkSpec& link);

}  // namespace partita

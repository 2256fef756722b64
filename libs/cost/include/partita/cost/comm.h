#pragma once
// Communication cost model (alpha-beta, a.k.a. Hockney): sending n bytes over a link takes
//   alpha + n / beta,   alpha = LinkSpec::latency, beta = LinkSpec::bandwidth (bytes/s, one direction).
// Assumptions: links are full duplex (a ring step sends and receives at once at full beta); no contention
// from other traffic; collectives are bound by the slowest link they use (pass that one); p = participants,
// n = bytes of each participant's buffer (for all-gather / reduce-scatter: the gathered total).
// Formulas follow Thakur, Rabenseifner & Gropp, "Optimization of Collective Communication Operations in
// MPICH" (2005). p == 1 costs 0 for every collective. All functions are pure and thread-safe; they throw
// partita::Error for p < 1, n < 0 or a link with non-positive bandwidth.
#include <string>
#include <vector>

#include "partita/core/units.h"
#include "partita/hardware/device.h"

namespace partita {

// Point to point: alpha + n / beta.
Seconds p2p_time(Bytes n, const LinkSpec& link);

// Ring all-reduce (reduce-scatter then all-gather): 2(p-1) alpha + 2 (p-1)/p * n / beta.
// Bandwidth-optimal; best for large buffers.
Seconds allreduce_ring_time(Bytes n, int p, const LinkSpec& slowest);

// Binary-tree all-reduce (reduce to a root, then broadcast; whole buffer per step): 2 ceil(log2 p) (alpha +
// n/beta). Latency-optimal; best for small buffers.
Seconds allreduce_tree_time(Bytes n, int p, const LinkSpec& link);

// The cheaper of ring and tree (what NCCL/Gloo pick between, roughly).
Seconds allreduce_time(Bytes n, int p, const LinkSpec& link);

// Ring all-gather of a buffer of n_total bytes in all (n_total / p from each): (p-1) alpha + (p-1)/p *
// n_total/beta.
Seconds allgather_time(Bytes n_total, int p, const LinkSpec& link);

// Ring reduce-scatter of a buffer of n_total bytes (each ends with n_total / p): same cost as all-gather.
Seconds reduce_scatter_time(Bytes n_total, int p, const LinkSpec& link);

// The slowest link of a ring over `device_ids` in the given order (i -> i+1, last -> first): lowest
// bandwidth, ties broken by higher latency. Throws partita::Error when an id is unknown or the cluster has no
// link between two neighbours. A single device yields a zero-latency link of infinite bandwidth named
// "local".
LinkSpec slowest_link(const Cluster& cluster, const std::vector<std::string>& device_ids);

}  // namespace partita

#include "partita/cost/comm.h"

#include <algorithm>
#include <bit>
#include <limits>

#include "partita/core/error.h"

namespace partita {

namespace {

void check_args(Bytes n, int p, const LinkSpec& link, const char* what) {
  PARTITA_CHECK(p >= 1, what, ": ", p, " participants; need at least 1");
  PARTITA_CHECK(n.value() >= 0, what, ": negative buffer size ", n.value(), " bytes");
  PARTITA_CHECK(link.bandwidth.value() > 0, what, ": link '", link.name, "' has bandwidth ",
                link.bandwidth.value(), " B/s; give it a positive bandwidth");
}

int ceil_log2(int p) { return std::bit_width(static_cast<unsigned>(p - 1)); }

}  // namespace

Seconds p2p_time(Bytes n, const LinkSpec& link) {
  check_args(n, 1, link, "p2p_time");
  return link.latency + n / link.bandwidth;
}

Seconds allreduce_ring_time(Bytes n, int p, const LinkSpec& slowest) {
  check_args(n, p, slowest, "allreduce_ring_time");
  if (p == 1) return Seconds(0);
  const double steps = 2.0 * (p - 1);
  return slowest.latency * steps + (n / slowest.bandwidth) * (steps / p);
}

Seconds allreduce_tree_time(Bytes n, int p, const LinkSpec& link) {
  check_args(n, p, link, "allreduce_tree_time");
  if (p == 1) return Seconds(0);
  return (link.latency + n / link.bandwidth) * (2.0 * ceil_log2(p));
}

Seconds allreduce_time(Bytes n, int p, const LinkSpec& link) {
  return std::min(allreduce_ring_time(n, p, link), allreduce_tree_time(n, p, link));
}

Seconds allgather_time(Bytes n_total, int p, const LinkSpec& link) {
  check_args(n_total, p, link, "allgather_time");
  if (p == 1) return Seconds(0);
  const double steps = p - 1;
  return link.latency * steps + (n_total / link.bandwidth) * (steps / p);
}

Seconds reduce_scatter_time(Bytes n_total, int p, const LinkSpec& link) {
  check_args(n_total, p, link, "reduce_scatter_time");
  return allgather_time(n_total, p, link);
}

LinkSpec slowest_link(const Cluster& cluster, const std::vector<std::string>& device_ids) {
  PARTITA_CHECK(!device_ids.empty(), "slowest_link: no devices given");
  for (const auto& id : device_ids) {
    PARTITA_CHECK(cluster.index_of(id) >= 0, "slowest_link: cluster '", cluster.name, "' has no device '", id,
                  "'");
  }
  if (device_ids.size() == 1) {
    return LinkSpec{"local", Seconds(0), BytesPerSecond(std::numeric_limits<double>::infinity()),
                    "same device"};
  }
  std::optional<LinkSpec> slowest;
  // With two devices the ring's two hops are one link; checking it twice is harmless.
  for (size_t i = 0; i < device_ids.size(); ++i) {
    const LinkSpec link = cluster.link_between(device_ids[i], device_ids[(i + 1) % device_ids.size()]);
    if (!slowest || link.bandwidth < slowest->bandwidth ||
        (link.bandwidth == slowest->bandwidth && link.latency > slowest->latency)) {
      slowest = link;
    }
  }
  return *slowest;
}

}  // namespace partita

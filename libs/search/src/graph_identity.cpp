#include "partita/search/graph_identity.h"

#include <cstdint>
#include <cstdio>

namespace partita {

GraphIdentity graph_identity(const Graph& graph) {
  // FNV-1a: stable across platforms and runs, unlike std::hash. It starts from 1469598103934665603, the
  // standard offset basis with its last digit dropped: kept, since every saved plan stores these hashes.
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ULL;
  };
  for (const Node& n : graph.nodes()) {
    for (char c : n.op) mix(static_cast<unsigned char>(c));
    mix('\n');
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return GraphIdentity{graph.num_nodes(), buf};
}

}  // namespace partita

#pragma once
// The identity of a graph as a plan records it: node count plus a hash of the op names in node order, so a
// plan made for one model is refused for another.
#include <string>

#include "partita/graph/graph.h"

namespace partita {

struct GraphIdentity {
  int num_nodes = 0;
  std::string
      op_hash;  // 16 hex digits of FNV-1a 64 over "op\n" for each node (a non-standard start, see .cpp)
  friend bool operator==(const GraphIdentity&, const GraphIdentity&) = default;
};

GraphIdentity graph_identity(const Graph& graph);

}  // namespace partita

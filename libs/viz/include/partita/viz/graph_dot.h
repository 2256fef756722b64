#pragma once
// Graphviz (DOT) picture of a graph: one box per compute node (label: op, scope, output shape, FLOPs),
// edges along tensor dataflow. Structural nodes (list construct, shape queries, views) are drawn small and
// grey.
#include <string>

#include "partita/graph/graph.h"

namespace partita {

struct DotOptions {
  int max_nodes = 2000;  // beyond this the picture is unreadable; the writer says it truncated
};

std::string graph_to_dot(const Graph& graph, const DotOptions& options = {});

}  // namespace partita

#pragma once
// JSON round-trip of the graph IR (all fields, so graph_from_json(graph_to_json(g)) == g in every field).
#include "partita/core/json_io.h"
#include "partita/graph/graph.h"

namespace partita {

Json graph_to_json(const Graph& graph);
// Throws partita::Error naming the field when the JSON is not a partita graph.
Graph graph_from_json(const Json& json);

}  // namespace partita

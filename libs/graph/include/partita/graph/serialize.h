#pragma once
// JSON round-trip of the graph IR (all fields, so graph_from_json(graph_to_json(g)) == g in every field).
//
// Layout (version 1):
//   {"format": "partita.graph", "version": 1,
//    "values": [{"id", "name", "kind", "role", "tensors": [{"shape", "dtype"}], "constant" (string or null),
//                "producer" (-1 for none), "users"}],
//    "nodes": [{"id", "op", "inputs", "outputs", "scope", "source",
//               "cost": {"flops", "bytes_read", "bytes_written", "status"}}],
//    "inputs": [value ids], "parameters": [{"name", "value", "requires_grad"}], "outputs": [value ids]}
// Enums are written as the short names below; flops as a number, bytes as integers.
#include <string_view>

#include "partita/core/json_io.h"
#include "partita/graph/graph.h"

namespace partita {

inline constexpr std::string_view kGraphFormat = "partita.graph";
inline constexpr int kGraphFormatVersion = 1;

Json graph_to_json(const Graph& graph);
// Throws partita::Error naming the field (e.g. "values[3].kind") when the JSON is not a partita graph of this
// version, or when producer/users disagree with the nodes' inputs and outputs.
Graph graph_from_json(const Json& json);

// Short names: "tensor" "scalar" "list" "tuple" "none" "other".
std::string_view value_kind_name(ValueKind kind);
// "input" "parameter" "buffer" "constant" "intermediate".
std::string_view value_role_name(ValueRole role);
// "estimated" "structural" "no_estimate".
std::string_view cost_status_name(CostStatus status);

}  // namespace partita

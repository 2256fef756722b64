#pragma once
// Reading the compile-time constants of a graph (kernel sizes, flags, dims) from their printed form
// (Value::constant: "3", "[3, 3]", "False", "None", "1.0000000000000001e-05", "'ij,jk->ik'").
// Traced graphs often build int lists with prim::ListConstruct of constants; constant_int_list looks through
// that. Every function returns std::nullopt when the value is not a constant of that type.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "partita/graph/graph.h"

namespace partita {

std::optional<int64_t> constant_int(const Graph& graph, ValueId id);
std::optional<double> constant_double(const Graph& graph, ValueId id);
// "True"/"False" (also "1"/"0").
std::optional<bool> constant_bool(const Graph& graph, ValueId id);
// A string constant with surrounding quotes removed.
std::optional<std::string> constant_string(const Graph& graph, ValueId id);
// "[3, 3]", a single int "3" (as {3}), or a prim::ListConstruct whose inputs are all int constants.
std::optional<std::vector<int64_t>> constant_int_list(const Graph& graph, ValueId id);
// True for a None value (kind kNone or printed "None").
bool is_none(const Graph& graph, ValueId id);

// Parses a printed int list "[1, -1, 3]" / "3"; std::nullopt if it is not one.
std::optional<std::vector<int64_t>> parse_int_list(const std::string& printed);

}  // namespace partita

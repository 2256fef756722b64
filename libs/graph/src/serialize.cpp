#include "partita/graph/serialize.h"

#include <array>
#include <string>
#include <utility>

#include "partita/core/error.h"

namespace partita {

namespace {

constexpr std::array<std::string_view, 6> kKindNames = {"tensor", "scalar", "list", "tuple", "none", "other"};
constexpr std::array<std::string_view, 5> kRoleNames = {"input", "parameter", "buffer", "constant",
                                                        "intermediate"};
constexpr std::array<std::string_view, 3> kStatusNames = {"estimated", "structural", "no_estimate"};

std::string join_path(const std::string& where, std::string_view key) {
  return where.empty() ? std::string(key) : where + "." + std::string(key);
}

const Json& field(const Json& obj, std::string_view key, const std::string& where) {
  PARTITA_CHECK(obj.is_object(), "graph JSON: '", where.empty() ? "(top level)" : where,
                "' must be an object, got ", obj.type_name());
  const auto it = obj.find(std::string(key));
  PARTITA_CHECK(it != obj.end(), "graph JSON: missing field '", join_path(where, key),
                "': the file is not a complete partita graph (re-export it with `partita analyze --json`)");
  return *it;
}

template <typename T>
T get(const Json& obj, std::string_view key, const std::string& where) {
  const Json& j = field(obj, key, where);
  try {
    return j.get<T>();
  } catch (const nlohmann::json::exception&) {
    PARTITA_FAIL("graph JSON: field '", join_path(where, key), "' has the wrong type (", j.type_name(), ")");
  }
}

const Json& get_array(const Json& obj, std::string_view key, const std::string& where) {
  const Json& j = field(obj, key, where);
  PARTITA_CHECK(j.is_array(), "graph JSON: field '", join_path(where, key), "' must be an array, got ",
                j.type_name());
  return j;
}

template <typename Enum, size_t N>
Enum parse_enum(const std::array<std::string_view, N>& names, const Json& obj, std::string_view key,
                const std::string& where) {
  const auto s = get<std::string>(obj, key, where);
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == s) return static_cast<Enum>(i);
  }
  PARTITA_FAIL("graph JSON: field '", join_path(where, key), "' has unknown value '", s, "'");
}

std::string at(std::string_view list, size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

Json value_to_json(const Value& v) {
  Json tensors = Json::array();
  for (const auto& t : v.tensors) tensors.push_back({{"shape", t.shape}, {"dtype", dtype_name(t.dtype)}});
  Json j = {{"id", v.id},
            {"name", v.name},
            {"kind", value_kind_name(v.kind)},
            {"role", value_role_name(v.role)},
            {"tensors", std::move(tensors)}};
  j["constant"] = v.constant ? Json(*v.constant) : Json(nullptr);
  if (v.shared) j["shared"] = true;
  j["producer"] = v.producer;
  j["users"] = v.users;
  return j;
}

Json node_to_json(const Node& n) {
  return {{"id", n.id},
          {"op", n.op},
          {"inputs", n.inputs},
          {"outputs", n.outputs},
          {"scope", n.scope},
          {"source", n.source},
          {"cost",
           {{"flops", n.cost.flops.value()},
            {"bytes_read", n.cost.bytes_read.value()},
            {"bytes_written", n.cost.bytes_written.value()},
            {"kernel_calls", n.cost.kernel_calls},
            {"status", cost_status_name(n.cost.status)}}}};
}

// parse_dtype rejects "other" (not a user spelling), but the IR can hold it, so it must round-trip.
DType read_dtype(const std::string& name, const std::string& where) {
  if (name == dtype_name(DType::kOther)) return DType::kOther;
  try {
    return parse_dtype(name);
  } catch (const Error& e) {
    PARTITA_FAIL("graph JSON: field '", where, ".dtype': ", e.what());
  }
}

void read_value(Graph& g, const Json& j, size_t index) {
  const std::string where = at("values", index);
  PARTITA_CHECK(get<int64_t>(j, "id", where) == static_cast<int64_t>(index), "graph JSON: '", where,
                ".id' must equal its position ", index);
  const ValueId id =
      g.add_value(parse_enum<ValueKind>(kKindNames, j, "kind", where), get<std::string>(j, "name", where),
                  parse_enum<ValueRole>(kRoleNames, j, "role", where));
  Value& v = g.value(id);
  const Json& tensors = get_array(j, "tensors", where);
  for (size_t t = 0; t < tensors.size(); ++t) {
    const std::string tw = where + "." + at("tensors", t);
    TensorMeta meta;
    meta.shape = get<std::vector<int64_t>>(tensors[t], "shape", tw);
    meta.dtype = read_dtype(get<std::string>(tensors[t], "dtype", tw), tw);
    v.tensors.push_back(std::move(meta));
  }
  const Json& constant = field(j, "constant", where);
  PARTITA_CHECK(constant.is_null() || constant.is_string(), "graph JSON: field '", where,
                ".constant' must be a string or null");
  if (constant.is_string()) v.constant = constant.get<std::string>();
  if (j.contains("shared")) {
    PARTITA_CHECK(j["shared"].is_boolean() && v.role == ValueRole::kInput, "graph JSON: field '", where,
                  ".shared' must be true or false, on a user input");
    v.shared = j["shared"].get<bool>();
  }
}

void read_node(Graph& g, const Json& j, size_t index) {
  const std::string where = at("nodes", index);
  PARTITA_CHECK(get<int64_t>(j, "id", where) == static_cast<int64_t>(index), "graph JSON: '", where,
                ".id' must equal its position ", index);
  auto inputs = get<std::vector<ValueId>>(j, "inputs", where);
  auto outputs = get<std::vector<ValueId>>(j, "outputs", where);
  for (ValueId in : inputs) {
    PARTITA_CHECK(in >= 0 && in < g.num_values(), "graph JSON: '", where, ".inputs' names unknown value ",
                  in);
  }
  for (ValueId out : outputs) {
    PARTITA_CHECK(out >= 0 && out < g.num_values(), "graph JSON: '", where, ".outputs' names unknown value ",
                  out);
    PARTITA_CHECK(g.value(out).producer == kNoNode && g.value(out).role == ValueRole::kIntermediate,
                  "graph JSON: '", where, ".outputs' value ", out, " is not a fresh intermediate value");
  }
  const NodeId id = g.add_node(get<std::string>(j, "op", where), std::move(inputs), std::move(outputs));
  Node& n = g.node(id);
  n.scope = get<std::string>(j, "scope", where);
  n.source = get<std::string>(j, "source", where);
  const Json& cost = field(j, "cost", where);
  const std::string cw = where + ".cost";
  n.cost.flops = Flops(get<double>(cost, "flops", cw));
  n.cost.bytes_read = Bytes(get<int64_t>(cost, "bytes_read", cw));
  n.cost.bytes_written = Bytes(get<int64_t>(cost, "bytes_written", cw));
  n.cost.status = parse_enum<CostStatus>(kStatusNames, cost, "status", cw);
  // Graphs written before kernel_calls existed count one call per op, as partita then did.
  if (cost.contains("kernel_calls")) {
    n.cost.kernel_calls = get<int64_t>(cost, "kernel_calls", cw);
    PARTITA_CHECK(n.cost.kernel_calls >= 1, "graph JSON: field '", join_path(cw, "kernel_calls"), "' is ",
                  n.cost.kernel_calls, "; an op launches at least one kernel");
  }
}

// producer and users are redundant with the nodes; a mismatch means the file was edited inconsistently.
void check_links(const Graph& g, const Json& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string where = at("values", i);
    const Value& v = g.value(static_cast<ValueId>(i));
    PARTITA_CHECK(get<NodeId>(values[i], "producer", where) == v.producer, "graph JSON: '", where,
                  ".producer' disagrees with the nodes' outputs (nodes say ", v.producer, ")");
    PARTITA_CHECK(get<std::vector<NodeId>>(values[i], "users", where) == v.users, "graph JSON: '", where,
                  ".users' disagrees with the nodes' inputs");
  }
}

std::vector<ValueId> read_ids(const Graph& g, const Json& j, std::string_view key) {
  auto ids = get<std::vector<ValueId>>(j, key, "");
  for (ValueId id : ids) {
    PARTITA_CHECK(id >= 0 && id < g.num_values(), "graph JSON: '", key, "' names unknown value ", id);
  }
  return ids;
}

}  // namespace

std::string_view value_kind_name(ValueKind kind) { return kKindNames[static_cast<size_t>(kind)]; }
std::string_view value_role_name(ValueRole role) { return kRoleNames[static_cast<size_t>(role)]; }
std::string_view cost_status_name(CostStatus status) { return kStatusNames[static_cast<size_t>(status)]; }

Json graph_to_json(const Graph& graph) {
  Json values = Json::array();
  for (const auto& v : graph.values()) values.push_back(value_to_json(v));
  Json nodes = Json::array();
  for (const auto& n : graph.nodes()) nodes.push_back(node_to_json(n));
  Json parameters = Json::array();
  for (const auto& p : graph.parameters()) {
    parameters.push_back({{"name", p.name}, {"value", p.value}, {"requires_grad", p.requires_grad}});
  }
  return {{"format", kGraphFormat},      {"version", kGraphFormatVersion},
          {"values", std::move(values)}, {"nodes", std::move(nodes)},
          {"inputs", graph.inputs()},    {"parameters", std::move(parameters)},
          {"outputs", graph.outputs()}};
}

Graph graph_from_json(const Json& json) {
  const auto format = get<std::string>(json, "format", "");
  PARTITA_CHECK(format == kGraphFormat, "graph JSON: field 'format' is '", format, "', expected '",
                kGraphFormat, "'");
  const auto version = get<int>(json, "version", "");
  PARTITA_CHECK(version == kGraphFormatVersion, "graph JSON: field 'version' is ", version,
                ", this partita reads version ", kGraphFormatVersion, " (re-export the graph)");
  Graph g;
  const Json& values = get_array(json, "values", "");
  for (size_t i = 0; i < values.size(); ++i) read_value(g, values[i], i);
  const Json& nodes = get_array(json, "nodes", "");
  for (size_t i = 0; i < nodes.size(); ++i) read_node(g, nodes[i], i);
  check_links(g, values);
  for (ValueId id : read_ids(g, json, "inputs")) g.append_input(id);
  const Json& parameters = get_array(json, "parameters", "");
  for (size_t i = 0; i < parameters.size(); ++i) {
    const std::string where = at("parameters", i);
    Parameter p{get<std::string>(parameters[i], "name", where), get<ValueId>(parameters[i], "value", where),
                get<bool>(parameters[i], "requires_grad", where)};
    PARTITA_CHECK(p.value >= 0 && p.value < g.num_values(), "graph JSON: '", where,
                  ".value' names unknown value ", p.value);
    g.append_parameter(std::move(p));
  }
  g.set_outputs(read_ids(g, json, "outputs"));
  return g;
}

}  // namespace partita

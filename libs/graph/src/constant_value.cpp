#include "partita/graph/constant_value.h"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <string_view>

namespace partita {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::optional<int64_t> parse_int(std::string_view s) {
  s = trim(s);
  int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

const std::string* printed(const Graph& graph, ValueId id) {
  const Value& v = graph.value(id);
  return v.constant ? &*v.constant : nullptr;
}

}  // namespace

std::optional<std::vector<int64_t>> parse_int_list(const std::string& text) {
  std::string_view s = trim(text);
  if (s.empty()) return std::nullopt;
  if (s.front() != '[') {
    const auto v = parse_int(s);
    if (!v) return std::nullopt;
    return std::vector<int64_t>{*v};
  }
  if (s.back() != ']') return std::nullopt;
  s = trim(s.substr(1, s.size() - 2));
  std::vector<int64_t> out;
  while (!s.empty()) {
    const size_t comma = s.find(',');
    const auto v = parse_int(s.substr(0, comma));
    if (!v) return std::nullopt;
    out.push_back(*v);
    if (comma == std::string_view::npos) break;
    s = s.substr(comma + 1);
  }
  return out;
}

std::optional<int64_t> constant_int(const Graph& graph, ValueId id) {
  const std::string* p = printed(graph, id);
  return p ? parse_int(*p) : std::nullopt;
}

std::optional<double> constant_double(const Graph& graph, ValueId id) {
  const std::string* p = printed(graph, id);
  if (!p || p->empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(p->c_str(), &end);
  if (end != p->c_str() + p->size()) return std::nullopt;
  return v;
}

std::optional<bool> constant_bool(const Graph& graph, ValueId id) {
  const std::string* p = printed(graph, id);
  if (!p) return std::nullopt;
  if (*p == "True" || *p == "true" || *p == "1") return true;
  if (*p == "False" || *p == "false" || *p == "0") return false;
  return std::nullopt;
}

std::optional<std::string> constant_string(const Graph& graph, ValueId id) {
  const std::string* p = printed(graph, id);
  if (!p) return std::nullopt;
  std::string_view s = trim(*p);
  if (s.size() >= 2 && (s.front() == '\'' || s.front() == '"') && s.back() == s.front()) {
    s = s.substr(1, s.size() - 2);
  }
  return std::string(s);
}

std::optional<std::vector<int64_t>> constant_int_list(const Graph& graph, ValueId id) {
  if (const std::string* p = printed(graph, id)) return parse_int_list(*p);
  const Value& v = graph.value(id);
  if (v.producer == kNoNode) return std::nullopt;
  const Node& n = graph.node(v.producer);
  if (n.op != "prim::ListConstruct") return std::nullopt;
  std::vector<int64_t> out;
  for (ValueId in : n.inputs) {
    const auto e = constant_int(graph, in);
    if (!e) return std::nullopt;
    out.push_back(*e);
  }
  return out;
}

bool is_none(const Graph& graph, ValueId id) {
  const Value& v = graph.value(id);
  return v.kind == ValueKind::kNone || (v.constant && *v.constant == "None");
}

}  // namespace partita

#include "partita/hardware/device.h"

#include <charconv>

#include "partita/core/error.h"

namespace partita {

namespace {

constexpr const char* kDeviceIdHelp = "use cpu, cpu:N, cpu:A-B or cuda:N";

// Parses a whole non-negative decimal integer; nullopt for anything else (signs, spaces, overflow).
std::optional<int> parse_index(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

}  // namespace

std::string DeviceId::to_string() const {
  switch (kind) {
    case DeviceKind::kCpu:
      if (index < 0) return "cpu";
      if (last_core == index) return "cpu:" + std::to_string(index);
      return "cpu:" + std::to_string(index) + "-" + std::to_string(last_core);
    case DeviceKind::kCuda:
      return "cuda:" + std::to_string(index);
    case DeviceKind::kOther:
      break;
  }
  return "other:" + std::to_string(index);
}

DeviceId parse_device_id(const std::string& text) {
  const std::string_view s(text);
  const auto colon = s.find(':');
  const std::string_view kind = s.substr(0, colon);
  const std::string_view rest = colon == std::string_view::npos ? std::string_view() : s.substr(colon + 1);
  PARTITA_CHECK(colon == std::string_view::npos || !rest.empty(), "bad device id '", text,
                "': nothing after ':'; ", kDeviceIdHelp);
  DeviceId id;
  if (kind == "cpu") {
    id.kind = DeviceKind::kCpu;
    if (colon == std::string_view::npos) return id;
    const auto dash = rest.find('-');
    const auto first = parse_index(rest.substr(0, dash));
    const auto last = dash == std::string_view::npos ? first : parse_index(rest.substr(dash + 1));
    PARTITA_CHECK(first && last, "bad device id '", text, "': core numbers must be non-negative integers; ",
                  kDeviceIdHelp);
    PARTITA_CHECK(*first <= *last, "bad device id '", text, "': core range ", *first, "-", *last,
                  " is empty; write the lower core first, e.g. cpu:", *last, "-", *first);
    id.index = *first;
    id.last_core = *last;
    return id;
  }
  if (kind == "cuda") {
    id.kind = DeviceKind::kCuda;
    PARTITA_CHECK(colon != std::string_view::npos, "bad device id '", text, "': say which GPU, e.g. cuda:0; ",
                  kDeviceIdHelp);
    const auto index = parse_index(rest);
    PARTITA_CHECK(index.has_value(), "bad device id '", text,
                  "': the GPU index must be a non-negative integer; ", kDeviceIdHelp);
    id.index = *index;
    return id;
  }
  PARTITA_FAIL("bad device id '", text, "': ", kDeviceIdHelp);
}

FlopsPerSecond DeviceSpec::flops_for(DType dtype) const {
  if (auto it = peak_flops.find(dtype); it != peak_flops.end()) return it->second;
  if (auto it = peak_flops.find(DType::kFloat32); it != peak_flops.end()) return it->second;
  return FlopsPerSecond(0);
}

LinkSpec Cluster::link_between(const std::string& a, const std::string& b) const {
  const int ia = index_of(a);
  const int ib = index_of(b);
  PARTITA_CHECK(ia >= 0, "cluster '", name, "' has no device '", a, "'");
  PARTITA_CHECK(ib >= 0, "cluster '", name, "' has no device '", b, "'");
  PARTITA_CHECK(ia != ib, "link_between('", a, "', '", b, "'): a device has no link to itself");
  for (const auto& link : links) {
    if ((link.a == a && link.b == b) || (link.a == b && link.b == a)) return link.spec;
  }
  const bool same_node = devices[static_cast<size_t>(ia)].node == devices[static_cast<size_t>(ib)].node;
  if (same_node && intra_node_link) return *intra_node_link;
  if (!same_node && inter_node_link) return *inter_node_link;
  PARTITA_FAIL("cluster '", name, "' has no link between '", a, "' and '", b, "' (",
               same_node ? "same node" : "different nodes", "): add a link between them or an ",
               same_node ? "intra_node" : "inter_node", " link");
}

int Cluster::index_of(const std::string& id) const {
  for (size_t i = 0; i < devices.size(); ++i) {
    if (devices[i].id == id) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace partita

#include "partita/hardware/cluster_file.h"

#include <map>
#include <set>

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/hardware/close_matches.h"
#include "partita/hardware/cpu_spec.h"
#include "partita/hardware/yaml_map.h"

namespace partita {

namespace {

// A profile or fail at the field with the close matches.
template <typename Spec, typename Find, typename Names>
const Spec& profile_field(const YamlMap& map, std::string_view field, Find find, Names names,
                          std::string_view what) {
  const std::string name = map.string(field);
  const Spec* spec = find(name);
  if (!spec) {
    map.fail(map.required(field), field,
             "names unknown " + std::string(what) + " profile '" + name + "'" + did_you_mean(name, names()));
  }
  return *spec;
}

void add_devices(const YamlMap& entry, const HardwareDb& db, std::map<std::string, int>& next_index,
                 Cluster& cluster) {
  entry.reject_unknown({"profile", "count", "node", "ids", "cores"});
  const DeviceSpec& profile = profile_field<DeviceSpec>(
      entry, "profile", [&](const std::string& n) { return db.find_device(n); },
      [&] { return db.device_names(); }, "device");
  const int count = entry.integer("count", 1);
  if (count < 1) entry.fail(entry.required("count"), "count", "must be at least 1");
  const std::string node = entry.optional_string("node").value_or("node0");
  const std::vector<std::string> ids = entry.string_list("ids");
  if (!ids.empty() && static_cast<int>(ids.size()) != count) {
    entry.fail(entry.required("ids"), "ids",
               "lists " + std::to_string(ids.size()) + " ids for count " + std::to_string(count));
  }
  DeviceSpec spec = profile;
  if (entry.has("cores")) {
    if (profile.kind != DeviceKind::kCpu)
      entry.fail(entry.required("cores"), "cores", "applies to CPU profiles only");
    const int cores = entry.integer("cores", 0);
    if (cores < 1 || cores > profile.cores) {
      entry.fail(entry.required("cores"), "cores",
                 "must be 1 to " + std::to_string(profile.cores) + " (the cores of '" + profile.name + "')");
    }
    spec = cpu_group_spec(profile, cores);
  }
  const std::string prefix = node + "/" + (profile.kind == DeviceKind::kCpu ? "cpu" : "gpu");
  for (int i = 0; i < count; ++i) {
    const std::string id =
        ids.empty() ? prefix + std::to_string(next_index[prefix]++) : ids[static_cast<size_t>(i)];
    if (cluster.index_of(id) >= 0) entry.fail(entry.node(), "ids", "repeats device id '" + id + "'");
    cluster.devices.push_back(ClusterDevice{id, node, spec});
  }
}

void add_link(const YamlMap& entry, const HardwareDb& db, Cluster& cluster) {
  entry.reject_unknown({"between", "link"});
  const std::vector<std::string> ends = entry.string_list("between");
  if (ends.size() != 2) entry.fail(entry.required("between"), "between", "must list two device ids");
  for (const auto& id : ends) {
    if (cluster.index_of(id) < 0) {
      std::vector<std::string> known;
      for (const auto& d : cluster.devices) known.push_back(d.id);
      entry.fail(entry.required("between"), "between",
                 "names unknown device '" + id + "'" + did_you_mean(id, known));
    }
  }
  if (ends[0] == ends[1])
    entry.fail(entry.required("between"), "between", "joins '" + ends[0] + "' to itself");
  const LinkSpec& link = profile_field<LinkSpec>(
      entry, "link", [&](const std::string& n) { return db.find_link(n); }, [&] { return db.link_names(); },
      "link");
  cluster.links.push_back(ClusterLink{ends[0], ends[1], link});
}

template <typename Fn>
void for_each_entry(const YamlMap& top, std::string_view key, const std::string& file, std::string_view what,
                    Fn fn) {
  if (!top.has(key)) return;
  const YAML::Node list = top.required(key);
  if (!list.IsSequence()) top.fail(list, key, "must be a list of entries starting with '- '");
  int n = 0;
  for (const auto& item : list) fn(YamlMap(file, item, std::string(what) + " entry " + std::to_string(++n)));
}

}  // namespace

void check_cluster_connected(const Cluster& cluster) {
  std::set<std::string> seen;
  for (const auto& d : cluster.devices) {
    PARTITA_CHECK(seen.insert(d.id).second, "cluster '", cluster.name, "' lists device id '", d.id,
                  "' twice");
  }
  for (size_t i = 0; i < cluster.devices.size(); ++i) {
    for (size_t j = i + 1; j < cluster.devices.size(); ++j) {
      cluster.link_between(cluster.devices[i].id, cluster.devices[j].id);  // throws naming the pair
    }
  }
}

Cluster parse_cluster(const std::string& yaml_text, const std::string& file_label, const HardwareDb& db) {
  const YAML::Node root = load_yaml_text(yaml_text, file_label);
  const YamlMap top(file_label, root, "cluster file");
  top.reject_unknown({"name", "intra_node_link", "inter_node_link", "process_link", "process_collective_link",
                      "devices", "links"});
  Cluster cluster;
  cluster.name = top.string("name");
  const auto link_of = [&](std::string_view key) -> std::optional<LinkSpec> {
    if (!top.has(key)) return std::nullopt;
    return profile_field<LinkSpec>(
        top, key, [&](const std::string& n) { return db.find_link(n); }, [&] { return db.link_names(); },
        "link");
  };
  cluster.intra_node_link = link_of("intra_node_link");
  cluster.inter_node_link = link_of("inter_node_link");
  cluster.process_link = link_of("process_link");
  cluster.process_collective_link = link_of("process_collective_link");
  if (!top.has("devices")) top.fail(root, "devices", "is missing: list at least one device");
  std::map<std::string, int> next_index;
  for_each_entry(top, "devices", file_label, "device",
                 [&](const YamlMap& entry) { add_devices(entry, db, next_index, cluster); });
  for_each_entry(top, "links", file_label, "link",
                 [&](const YamlMap& entry) { add_link(entry, db, cluster); });
  PARTITA_CHECK(!cluster.devices.empty(), file_label, ": cluster '", cluster.name, "' has no devices");
  try {
    check_cluster_connected(cluster);
  } catch (const Error& e) {
    PARTITA_FAIL(file_label, ": ", e.what());
  }
  return cluster;
}

Cluster load_cluster(const std::string& path, const HardwareDb& db) {
  return parse_cluster(read_text_file(path), path, db);
}

}  // namespace partita

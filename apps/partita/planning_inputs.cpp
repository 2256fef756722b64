#include "planning_inputs.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/core/log.h"
#include "partita/hardware/cluster_file.h"
#include "partita/hardware/cpu_info.h"
#include "partita/hardware/cpu_spec.h"
#include "partita/hardware/nvml.h"
#include "partita/hardware/quantity_parse.h"
#include "partita/search/model_spec.h"
#include "partita/torch_bridge/model.h"

namespace partita::app {

namespace {

std::string absolute(const std::string& path) {
  return path.empty() ? path : std::filesystem::absolute(path).lexically_normal().string();
}

// The database profile of a GPU NVML names ("NVIDIA H200" -> "H200"): exact name, the name without the vendor,
// else the longest profile name contained in it. nullptr when none matches.
const DeviceSpec* gpu_profile(const HardwareDb& db, const std::string& nvml_name) {
  if (const DeviceSpec* s = db.find_device(nvml_name)) return s;
  const std::string bare = nvml_name.starts_with("NVIDIA ") ? nvml_name.substr(7) : nvml_name;
  if (const DeviceSpec* s = db.find_device(bare)) return s;
  const DeviceSpec* best = nullptr;
  for (const auto& d : db.devices) {
    if (d.kind == DeviceKind::kCuda && bare.find(d.name) != std::string::npos &&
        (!best || d.name.size() > best->name.size())) {
      best = &d;
    }
  }
  return best;
}

struct LocalHardware {
  DeviceSpec cpu;
  std::vector<DeviceSpec> gpus;  // index = cuda index; a GPU without a profile is left out (with a warning)
  std::vector<std::string> gpu_ids;
};

LocalHardware discover_local(const HardwareDb& db) {
  LocalHardware hw;
  hw.cpu = cpu_device_spec(discover_cpu("/"), &db);
  const Nvml nvml;
  for (int i = 0; i < nvml.device_count(); ++i) {
    const NvmlDeviceInfo info = nvml.device_info(i);
    const DeviceSpec* profile = gpu_profile(db, info.name);
    if (!profile) {
      log_warning(fmt::format("GPU cuda:{} '{}' has no profile in {}; it is left out of planning (add it there)",
                              i, info.name, db.path));
      continue;
    }
    DeviceSpec spec = *profile;
    if (info.memory_total.value() > 0) spec.memory = info.memory_total;
    hw.gpus.push_back(spec);
    hw.gpu_ids.push_back("cuda:" + std::to_string(i));
  }
  return hw;
}

std::string available_ids(const LocalHardware& hw) {
  std::string out = "cpu";
  for (int c = 0; c < hw.cpu.cores; ++c) out += ", cpu:" + std::to_string(c);
  for (const auto& id : hw.gpu_ids) out += ", " + id;
  return out;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(std::remove_if(item.begin(), item.end(), [](unsigned char ch) { return std::isspace(ch); }), item.end());
    PARTITA_CHECK(!item.empty(), "--devices '", text, "' has an empty entry; write ids separated by commas, like cpu:0,cpu:1");
    out.push_back(item);
  }
  return out;
}

}  // namespace

Cluster local_cluster(const std::string& devices, const HardwareDb& db) {
  const LocalHardware hw = discover_local(db);
  std::vector<std::string> ids;
  if (devices.empty()) {
    for (int c = 0; c < hw.cpu.cores; ++c) ids.push_back("cpu:" + std::to_string(c));
    ids.insert(ids.end(), hw.gpu_ids.begin(), hw.gpu_ids.end());
  } else {
    ids = split_list(devices);
  }
  Cluster cluster;
  cluster.name = "localhost";
  cluster.intra_node_link = shared_memory_link(hw.cpu);
  // Host <-> GPU traffic crosses PCIe; the H100/H200 generation sits on PCIe 5 (about 55 GB/s measured pinned).
  std::vector<bool> core_used(static_cast<size_t>(std::max(hw.cpu.cores, 1)), false);
  for (const auto& text : ids) {
    const DeviceId id = parse_device_id(text);
    const std::string name = id.to_string();
    PARTITA_CHECK(cluster.index_of(name) < 0, "--devices lists ", name, " twice; name each device once");
    if (id.kind == DeviceKind::kCpu) {
      const int first = id.index < 0 ? 0 : id.index;
      const int last = id.index < 0 ? hw.cpu.cores - 1 : id.last_core;
      PARTITA_CHECK(last < hw.cpu.cores, "device ", name, " is not here: this machine has ", available_ids(hw),
                    "; describe other hardware with --cluster FILE.yaml");
      for (int c = first; c <= last; ++c) {
        PARTITA_CHECK(!core_used[static_cast<size_t>(c)], "device ", name, " shares core ", c,
                      " with another device in --devices; give each core to one device (e.g. cpu:0,cpu:1 or cpu)");
        core_used[static_cast<size_t>(c)] = true;
      }
      DeviceSpec spec = id.index < 0 ? hw.cpu : cpu_group_spec(hw.cpu, last - first + 1);
      cluster.devices.push_back(ClusterDevice{name, "localhost", spec});
      continue;
    }
    const auto it = std::find(hw.gpu_ids.begin(), hw.gpu_ids.end(), name);
    PARTITA_CHECK(id.kind == DeviceKind::kCuda && it != hw.gpu_ids.end(), "device ", name,
                  " is not here: this machine has ", available_ids(hw),
                  "; describe other hardware with --cluster FILE.yaml");
    const DeviceSpec& spec = hw.gpus[static_cast<size_t>(it - hw.gpu_ids.begin())];
    const bool pcie5 = spec.name.find("H100") != std::string::npos || spec.name.find("H200") != std::string::npos;
    const LinkSpec host = db.link(pcie5 ? "PCIe 5.0 x16" : "PCIe 4.0 x16");
    for (const auto& other : cluster.devices) cluster.links.push_back(ClusterLink{other.id, name, host});
    cluster.devices.push_back(ClusterDevice{name, "localhost", spec});
  }
  return cluster;
}

Bytes parse_memory_limit(const std::string& text) {
  const bool digits = !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
  if (digits) {
    try {
      return Bytes(std::stoll(text));
    } catch (const std::exception&) {
      PARTITA_FAIL("--memory-limit '", text, "' is too large; write it with a unit, like 80GiB");
    }
  }
  const auto b = parse_bytes(text);
  PARTITA_CHECK(b && b->value() > 0, "--memory-limit '", text, "' is not a memory size; write bytes or a size like ",
                kBytesExample, ", 4GiB or 512MB");
  return *b;
}

Graph load_source_graph(const PlanSource& source) {
  const bool has_model = !source.model.empty(), has_spec = !source.model_spec.empty();
  PARTITA_CHECK(has_model != has_spec, has_model ? "give either MODEL.pt or --model-spec, not both"
                                                 : "nothing to plan: give MODEL.pt --input SPEC... or --model-spec FILE.yaml");
  if (has_spec) {
    PARTITA_CHECK(source.batch >= 1, "--batch is ", source.batch, "; give a positive number of samples per step");
    log_info(fmt::format("building {} at batch {}", source.model_spec, source.batch));
    return build_model_graph(load_model_spec(source.model_spec), source.batch);
  }
  PARTITA_CHECK(!source.inputs.empty(), "--input is required with a TorchScript model: one spec per forward() argument, "
                "like --input 32x64");
  std::vector<InputSpec> specs;
  for (const auto& s : source.inputs) specs.push_back(parse_input_spec(s));
  log_info(fmt::format("loading {}", source.model));
  LoadedModel model = load_model(source.model);
  annotate_shapes(model, specs);
  return std::move(model.ir);
}

PlanningInputs make_planning_inputs(Graph graph, PlanSource source, int graph_batch) {
  PARTITA_CHECK(source.devices.empty() || source.cluster.empty(),
                "give either --devices or --cluster, not both: --devices names devices of this machine, --cluster "
                "describes other hardware");
  PlanningInputs in;
  const HardwareDb db = load_hardware_db(default_hardware_db_path());
  if (!source.cluster.empty()) {
    source.cluster = absolute(source.cluster);
    in.cluster = load_cluster(source.cluster, db);
  } else {
    in.cluster = local_cluster(source.devices, db);
    if (source.devices.empty()) {
      std::string ids;
      for (const auto& d : in.cluster.devices) ids += (ids.empty() ? "" : ",") + d.id;
      source.devices = ids;  // record the default so a later simulate uses the same devices
    }
  }
  PARTITA_CHECK(!in.cluster.devices.empty(), "no devices to plan for; name some with --devices or --cluster");
  std::vector<DeviceSpec> specs;
  for (const auto& d : in.cluster.devices) {
    if (std::none_of(specs.begin(), specs.end(), [&](const DeviceSpec& s) { return s.name == d.spec.name; })) {
      specs.push_back(d.spec);
    }
  }
  log_info(fmt::format("cost table: roofline over {} device kind(s), {} nodes", specs.size(), graph.num_nodes()));
  in.table = roofline_cost_table(graph, specs);
  source.cost = in.table.method.empty() ? "roofline" : in.table.method;
  int batch = graph_batch;
  if (batch <= 0) {
    for (ValueId id : graph.inputs()) {
      const TensorMeta* m = graph.value(id).meta();
      if (m && !m->shape.empty() && m->shape[0] > 0) {
        batch = static_cast<int>(m->shape[0]);
        break;
      }
    }
  }
  in.options.graph_batch = std::max(batch, 1);
  in.options.global_batch = std::max(batch, 1);
  in.options.memory_limit = source.memory_limit;
  source.model = absolute(source.model);
  source.model_spec = absolute(source.model_spec);
  in.source = std::move(source);
  in.graph = std::move(graph);
  return in;
}

PlanningInputs load_planning_inputs(const PlanSource& source) {
  const int batch = source.model_spec.empty() ? 0 : source.batch;
  return make_planning_inputs(load_source_graph(source), source, batch);
}

}  // namespace partita::app

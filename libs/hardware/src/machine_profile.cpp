#include "partita/hardware/machine_profile.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "partita/core/error.h"
#include "partita/hardware/device_json.h"

namespace partita {

const ProfiledDevice* MachineProfile::find(const std::string& id) const {
  for (const auto& d : devices) {
    if (d.id == id) return &d;
  }
  return nullptr;
}

Json machine_profile_to_json(const MachineProfile& p) {
  Json j;
  j["version"] = p.version;
  j["fingerprint"] = p.fingerprint;
  j["key"] = p.key;
  j["date"] = p.date;
  j["quick"] = p.quick;
  j["seconds_taken"] = p.seconds_taken;
  Json devices = Json::array();
  for (const auto& d : p.devices) {
    devices.push_back({{"id", d.id}, {"threads", d.threads}, {"spec", device_spec_to_json(d.spec)}});
  }
  j["devices"] = devices;
  if (p.loopback) j["loopback_link"] = link_spec_to_json(*p.loopback);
  if (p.process_link) j["process_link"] = link_spec_to_json(*p.process_link);
  if (p.process_collective_link) j["process_collective_link"] = link_spec_to_json(*p.process_collective_link);
  Json host_links = Json::array();
  for (const auto& l : p.host_links) host_links.push_back(link_spec_to_json(l));
  j["host_links"] = host_links;
  Json gemm = Json::array();
  for (const auto& g : p.gemm) {
    gemm.push_back({{"device", g.device},
                    {"n", g.n},
                    {"dtype", dtype_name(g.dtype)},
                    {"threads", g.threads},
                    {"flops_per_second", g.rate.value()}});
  }
  j["gemm"] = gemm;
  Json scaling = Json::array();
  for (const auto& s : p.thread_scaling) {
    scaling.push_back({{"threads", s.threads},
                       {"matmul_flops_per_second", s.matmul.value()},
                       {"conv_flops_per_second", s.conv.value()},
                       {"elementwise_bytes_per_second", s.elementwise.value()}});
  }
  j["thread_scaling"] = scaling;
  j["best_matmul_threads"] = p.best_matmul_threads;
  j["best_conv_threads"] = p.best_conv_threads;
  j["best_elementwise_threads"] = p.best_elementwise_threads;
  j["copy_bandwidth"] = p.copy_bandwidth.value();
  j["add_bandwidth"] = p.add_bandwidth.value();
  j["op_overhead_direct"] = p.op_overhead_direct.value();
  j["op_overhead_boxed"] = p.op_overhead_boxed.value();
  j["conv_flops_per_second"] = p.conv_rate.value();
  Json samples = Json::array();
  for (const auto& s : p.op_class_samples) {
    samples.push_back({{"op_class", s.op_class},
                       {"kernel", s.kernel},
                       {"threads", s.threads},
                       {"flops", s.flops.value()},
                       {"bytes", s.bytes.value()},
                       {"seconds", s.time.value()},
                       {"backward_seconds", s.backward.value()}});
  }
  j["op_class_samples"] = samples;
  Json ar = Json::array();
  for (const auto& s : p.allreduce) ar.push_back({{"bytes", s.bytes.value()}, {"seconds", s.time.value()}});
  j["allreduce_loopback"] = ar;
  Json messages = Json::array();
  for (const auto& s : p.process_messages)
    messages.push_back({{"bytes", s.bytes.value()}, {"seconds", s.time.value()}});
  j["process_messages"] = messages;
  Json shared_ar = Json::array();
  for (const auto& s : p.process_allreduce)
    shared_ar.push_back({{"bytes", s.bytes.value()}, {"seconds", s.time.value()}});
  j["process_allreduce"] = shared_ar;
  j["notes"] = p.notes;
  return j;
}

MachineProfile machine_profile_from_json(const Json& j) {
  MachineProfile p;
  try {
    p.version = j.at("version").get<int>();
    PARTITA_CHECK(p.version == MachineProfile::kVersion, "machine profile version ", p.version, " is not ",
                  MachineProfile::kVersion, ": run partita profile --refresh");
    p.fingerprint = j.at("fingerprint").get<std::string>();
    p.key = j.at("key").get<std::string>();
    p.date = j.at("date").get<std::string>();
    p.quick = j.at("quick").get<bool>();
    p.seconds_taken = j.at("seconds_taken").get<double>();
    for (const auto& d : j.at("devices")) {
      p.devices.push_back(ProfiledDevice{d.at("id").get<std::string>(), d.at("threads").get<int>(),
                                         device_spec_from_json(d.at("spec"))});
    }
    if (j.contains("loopback_link")) p.loopback = link_spec_from_json(j.at("loopback_link"));
    if (j.contains("process_link")) p.process_link = link_spec_from_json(j.at("process_link"));
    if (j.contains("process_collective_link"))
      p.process_collective_link = link_spec_from_json(j.at("process_collective_link"));
    for (const auto& l : j.at("host_links")) p.host_links.push_back(link_spec_from_json(l));
    for (const auto& g : j.at("gemm")) {
      p.gemm.push_back(GemmSample{g.at("device").get<std::string>(), g.at("n").get<int64_t>(),
                                  parse_dtype(g.at("dtype").get<std::string>()), g.at("threads").get<int>(),
                                  FlopsPerSecond(g.at("flops_per_second").get<double>())});
    }
    for (const auto& s : j.at("thread_scaling")) {
      p.thread_scaling.push_back(ThreadScalingSample{
          s.at("threads").get<int>(), FlopsPerSecond(s.at("matmul_flops_per_second").get<double>()),
          FlopsPerSecond(s.at("conv_flops_per_second").get<double>()),
          BytesPerSecond(s.at("elementwise_bytes_per_second").get<double>())});
    }
    p.best_matmul_threads = j.at("best_matmul_threads").get<int>();
    p.best_conv_threads = j.at("best_conv_threads").get<int>();
    p.best_elementwise_threads = j.at("best_elementwise_threads").get<int>();
    p.copy_bandwidth = BytesPerSecond(j.at("copy_bandwidth").get<double>());
    p.add_bandwidth = BytesPerSecond(j.at("add_bandwidth").get<double>());
    p.op_overhead_direct = Seconds(j.at("op_overhead_direct").get<double>());
    p.op_overhead_boxed = Seconds(j.at("op_overhead_boxed").get<double>());
    p.conv_rate = FlopsPerSecond(j.at("conv_flops_per_second").get<double>());
    for (const auto& s : j.at("op_class_samples")) {
      p.op_class_samples.push_back(OpClassSample{
          s.at("op_class").get<std::string>(), s.at("kernel").get<std::string>(), s.at("threads").get<int>(),
          Flops(s.at("flops").get<double>()), Bytes(s.at("bytes").get<int64_t>()),
          Seconds(s.at("seconds").get<double>()), Seconds(s.at("backward_seconds").get<double>())});
    }
    for (const auto& s : j.at("allreduce_loopback")) {
      p.allreduce.push_back(
          AllreduceSample{Bytes(s.at("bytes").get<int64_t>()), Seconds(s.at("seconds").get<double>())});
    }
    if (j.contains("process_messages")) {
      for (const auto& s : j.at("process_messages")) {
        p.process_messages.push_back(
            AllreduceSample{Bytes(s.at("bytes").get<int64_t>()), Seconds(s.at("seconds").get<double>())});
      }
    }
    if (j.contains("process_allreduce")) {
      for (const auto& s : j.at("process_allreduce")) {
        p.process_allreduce.push_back(
            AllreduceSample{Bytes(s.at("bytes").get<int64_t>()), Seconds(s.at("seconds").get<double>())});
      }
    }
    p.notes = j.at("notes").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    PARTITA_FAIL("machine profile JSON is incomplete (", e.what(), "): run partita profile --refresh");
  }
  return p;
}

std::string cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/partita";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/partita";
  return "/tmp/partita-cache";
}

std::string machine_profile_path(const std::string& key) { return cache_dir() + "/machine-" + key + ".json"; }

std::string stable_hash(const std::string& text) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64: stable across runs and compilers, unlike std::hash
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace partita

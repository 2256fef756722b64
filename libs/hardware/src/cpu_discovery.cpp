#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "partita/core/error.h"
#include "partita/hardware/cpu_info.h"

namespace partita {

namespace fs = std::filesystem;

namespace {

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\n");
  const auto e = s.find_last_not_of(" \t\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// First line of a small sysfs file, trimmed; "" when unreadable.
std::string read_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return trim(line);
}

int to_int(const std::string& s, int fallback) {
  try {
    return s.empty() ? fallback : std::stoi(s);
  } catch (const std::exception&) {
    return fallback;
  }
}

// sysfs cache sizes: "48K", "1024K", "32M".
Bytes parse_cache_size(const std::string& s) {
  if (s.empty()) return Bytes(0);
  const int64_t n = to_int(s, 0);
  switch (s.back()) {
    case 'K':
      return Bytes(n * 1024);
    case 'M':
      return Bytes(n * 1024 * 1024);
    case 'G':
      return Bytes(n * 1024 * 1024 * 1024);
    default:
      return Bytes(n);
  }
}

struct CpuinfoSummary {
  int logical = 0;
  std::set<int> sockets;
  std::set<std::pair<int, int>> cores;  // (physical id, core id)
  std::set<std::string> flags;
};

CpuinfoSummary read_cpuinfo(const fs::path& path, CpuInfo& info) {
  std::ifstream in(path);
  PARTITA_CHECK(in.good(), "cannot read ", path.string(), ": CPU discovery needs /proc/cpuinfo (Linux only)");
  CpuinfoSummary s;
  int physical_id = 0;
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = trim(line.substr(0, colon));
    const std::string value = trim(line.substr(colon + 1));
    if (key == "processor") {
      ++s.logical;
      physical_id = 0;
    } else if (key == "model name" && info.model_name.empty()) {
      info.model_name = value;
    } else if (key == "vendor_id" && info.vendor.empty()) {
      info.vendor = value;
    } else if (key == "cpu MHz" && info.mhz == 0) {
      info.mhz = std::atof(value.c_str());
    } else if (key == "physical id") {
      physical_id = to_int(value, 0);
      s.sockets.insert(physical_id);
    } else if (key == "core id") {
      s.cores.insert({physical_id, to_int(value, 0)});
    } else if ((key == "flags" || key == "Features") && s.flags.empty()) {
      std::istringstream words(value);
      for (std::string w; words >> w;) s.flags.insert(w);
    }
  }
  return s;
}

// Topology from sysfs when /proc/cpuinfo lacks "physical id"/"core id" (some ARM and VM kernels).
void read_sysfs_topology(const fs::path& cpu_dir, int logical, CpuinfoSummary& s) {
  for (int i = 0; i < logical; ++i) {
    const fs::path topo = cpu_dir / ("cpu" + std::to_string(i)) / "topology";
    const int package = to_int(read_line(topo / "physical_package_id"), -1);
    const int core = to_int(read_line(topo / "core_id"), -1);
    if (package < 0 || core < 0) continue;
    s.sockets.insert(package);
    s.cores.insert({package, core});
  }
}

void read_caches(const fs::path& cache_dir, CpuInfo& info) {
  std::error_code ec;
  if (!fs::is_directory(cache_dir, ec)) return;
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(cache_dir, ec)) {
    if (e.path().filename().string().starts_with("index")) dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end());
  for (const auto& d : dirs) {
    CpuCache c;
    c.level = to_int(read_line(d / "level"), 0);
    c.type = read_line(d / "type");
    c.size = parse_cache_size(read_line(d / "size"));
    const std::string shared = read_line(d / "shared_cpu_list");
    c.shared_by_cpus = shared.empty() ? 1 : count_cpu_list(shared);
    info.caches.push_back(c);
  }
}

void read_meminfo(const fs::path& path, CpuInfo& info) {
  std::ifstream in(path);
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib) {
    std::getline(in, unit);  // " kB"
    if (key == "MemTotal:") info.memory_total = Bytes(kib * 1024);
    if (key == "MemAvailable:") info.memory_available = Bytes(kib * 1024);
  }
}

int count_numa_nodes(const fs::path& node_dir) {
  std::error_code ec;
  int n = 0;
  if (fs::is_directory(node_dir, ec)) {
    for (const auto& e : fs::directory_iterator(node_dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.size() > 4 && name.starts_with("node") && std::isdigit(static_cast<unsigned char>(name[4])))
        ++n;
    }
  }
  return std::max(n, 1);
}

}  // namespace

int count_cpu_list(std::string_view list) {
  int count = 0;
  std::string item;
  std::istringstream in{std::string(list)};
  while (std::getline(in, item, ',')) {
    item = trim(item);
    if (item.empty()) continue;
    const auto dash = item.find('-');
    const int a = to_int(item.substr(0, dash), -1);
    const int b = dash == std::string::npos ? a : to_int(item.substr(dash + 1), -1);
    PARTITA_CHECK(a >= 0 && b >= a, "malformed CPU list '", list, "' (item '", item,
                  "'): expected e.g. 0-3,8");
    count += b - a + 1;
  }
  return count;
}

CpuInfo discover_cpu(const std::string& root) {
  const fs::path base(root);
  CpuInfo info;
  CpuinfoSummary s = read_cpuinfo(base / "proc/cpuinfo", info);
  const fs::path cpu_dir = base / "sys/devices/system/cpu";
  if (s.cores.empty()) read_sysfs_topology(cpu_dir, s.logical, s);
  info.threads = s.logical;
  info.sockets = std::max<int>(1, static_cast<int>(s.sockets.size()));
  info.physical_cores = s.cores.empty() ? s.logical : static_cast<int>(s.cores.size());
  // Prefer the rated maximum over the momentary clock that /proc/cpuinfo shows.
  if (const int khz = to_int(read_line(cpu_dir / "cpu0/cpufreq/cpuinfo_max_freq"), 0); khz > 0) {
    info.mhz = khz / 1000.0;
  }
  for (std::string_view flag : kSimdFlags) {
    if (s.flags.contains(std::string(flag))) info.simd.emplace_back(flag);
  }
  read_caches(cpu_dir / "cpu0/cache", info);
  read_meminfo(base / "proc/meminfo", info);
  info.numa_nodes = count_numa_nodes(base / "sys/devices/system/node");
  return info;
}

bool CpuInfo::has_flag(std::string_view flag) const {
  return std::find(simd.begin(), simd.end(), flag) != simd.end();
}

Bytes CpuInfo::cache_bytes(int level) const {
  Bytes total(0);
  for (const auto& c : caches) {
    if (c.level != level || c.type == "Instruction") continue;
    const int instances = threads > 0 ? std::max(1, threads / std::max(1, c.shared_by_cpus)) : 1;
    total += c.size * static_cast<double>(instances);
  }
  return total;
}

int CpuInfo::f32_lanes() const {
  if (has_flag("avx512f")) return 16;
  if (has_flag("avx") || has_flag("avx2")) return 8;
  if (has_flag("sse4_2") || has_flag("asimd")) return 4;
  return 1;
}

}  // namespace partita

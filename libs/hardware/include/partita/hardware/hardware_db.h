#pragma once
// The hardware profile database: published figures of devices and links, read from YAML
// (config/hardware_profiles.yaml). Format, one entry per device / link:
//
//   devices:
//     - name: H100 SXM                 # the profile name cluster files refer to
//       kind: cuda                     # cuda | cpu | other
//       peak_flops: {f64: 34 TFLOP/s, f32: 67 TFLOP/s, bf16: 989 TFLOP/s, f16: 989 TFLOP/s}   # dense
//       memory: 80 GB
//       memory_bandwidth: 3.35 TB/s
//       tdp: 700 W
//       idle_power: 70 W
//       op_overhead: 10 us             # optional, default 0
//       cores: 96                      # CPUs: physical cores
//       source: NVIDIA H100 Tensor Core GPU datasheet
//   links:
//     - {name: NVLink 4, latency: 2 us, bandwidth: 450 GB/s, source: ...}   # bandwidth per direction
//
// Units: see quantity_parse.h. Unknown fields are errors (they are usually typos). A HardwareDb is a value;
// const use from several threads is safe.
#include <string>
#include <string_view>
#include <vector>

#include "partita/hardware/device.h"

namespace partita {

struct HardwareDb {
  std::string path;  // the file it was read from ("" when parsed from text)
  std::vector<DeviceSpec> devices;
  std::vector<LinkSpec> links;

  // Exact name, else case-insensitive; nullptr when absent.
  const DeviceSpec* find_device(std::string_view name) const;
  const LinkSpec* find_link(std::string_view name) const;
  // Same, but throws partita::Error naming the close matches ("unknown device profile 'A100'; did you
  // mean...").
  const DeviceSpec& device(std::string_view name) const;
  const LinkSpec& link(std::string_view name) const;
  // The CPU profile whose name occurs in a /proc/cpuinfo model name ("AMD EPYC 9654 96-Core Processor"
  // matches "AMD EPYC 9654"), longest name first; nullptr when none does.
  const DeviceSpec* match_cpu_model(std::string_view model_name) const;

  std::vector<std::string> device_names() const;
  std::vector<std::string> link_names() const;
};

// Reads and validates a profile file. Throws partita::Error "FILE:LINE: device 'NAME': field 'FIELD' ..." for
// a bad field, a duplicate name or a missing required field (kind, memory_bandwidth, memory, tdp, peak_flops
// f32 for devices; latency, bandwidth for links).
HardwareDb load_hardware_db(const std::string& path);
// Same from YAML text; `file_label` stands for the file name in messages.
HardwareDb parse_hardware_db(const std::string& yaml_text, const std::string& file_label);

// config/hardware_profiles.yaml of the source tree this binary was built from, or $PARTITA_HARDWARE_DB when
// set.
std::string default_hardware_db_path();

}  // namespace partita

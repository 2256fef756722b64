#include "partita/hardware/hardware_db.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

const std::string kData = PARTITA_SOURCE_DIR "/libs/hardware/tests/data/";
const std::string kProfiles = PARTITA_SOURCE_DIR "/config/hardware_profiles.yaml";

std::string load_error(const std::string& path) {
  try {
    load_hardware_db(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(HardwareDb, ShippedProfilesLoad) {
  const HardwareDb db = load_hardware_db(kProfiles);
  for (const char* name :
       {"H200", "H100 SXM", "H100 PCIe", "A100 40GB", "A100 80GB", "V100 SXM2", "V100 PCIe", "L40S", "L4",
        "T4", "RTX 4090", "RTX 3090", "MI300X", "MI250X", "AMD EPYC 9654", "Intel Xeon Platinum 8480+"}) {
    const DeviceSpec* d = db.find_device(name);
    ASSERT_NE(d, nullptr) << name;
    EXPECT_GT(d->flops_for(DType::kFloat32).value(), 0) << name;
    EXPECT_GT(d->memory_bandwidth.value(), 0) << name;
    EXPECT_GT(d->memory.value(), 0) << name;
    EXPECT_GT(d->tdp.value(), d->idle_power.value()) << name;
    EXPECT_FALSE(d->source.empty()) << name;
  }
  for (const char* name : {"NVLink 3", "NVLink 4", "PCIe 4.0 x16", "PCIe 5.0 x16", "InfiniBand HDR",
                           "InfiniBand NDR", "100 GbE", "25 GbE"}) {
    ASSERT_NE(db.find_link(name), nullptr) << name;
  }
}

TEST(HardwareDb, ShippedFiguresParsedWithUnits) {
  const HardwareDb db = load_hardware_db(kProfiles);
  const DeviceSpec& h100 = db.device("H100 SXM");
  EXPECT_EQ(h100.kind, DeviceKind::kCuda);
  EXPECT_DOUBLE_EQ(h100.flops_for(DType::kBFloat16).value(), 989e12);
  EXPECT_DOUBLE_EQ(h100.flops_for(DType::kFloat32).value(), 67e12);
  EXPECT_DOUBLE_EQ(h100.memory_bandwidth.value(), 3.35e12);
  EXPECT_EQ(h100.memory.value(), 80'000'000'000LL);
  EXPECT_DOUBLE_EQ(h100.tdp.value(), 700.0);
  EXPECT_DOUBLE_EQ(h100.op_overhead.value(), 10e-6);
  // V100 has no bf16: falls back to f32.
  EXPECT_DOUBLE_EQ(db.device("V100 SXM2").flops_for(DType::kBFloat16).value(), 15.7e12);
  EXPECT_EQ(db.device("AMD EPYC 9654").cores, 96);
  EXPECT_EQ(db.device("AMD EPYC 9654").kind, DeviceKind::kCpu);
  const LinkSpec& ndr = db.link("InfiniBand NDR");
  EXPECT_DOUBLE_EQ(ndr.bandwidth.value(), 50e9);  // 400 Gbit/s
  EXPECT_DOUBLE_EQ(ndr.latency.value(), 2e-6);
  EXPECT_DOUBLE_EQ(db.link("25 GbE").bandwidth.value(), 3.125e9);
  EXPECT_DOUBLE_EQ(db.link("PCIe 4.0 x16").bandwidth.value(), 31.5e9);
}

TEST(HardwareDb, LookupIsCaseInsensitiveAndSuggests) {
  const HardwareDb db = load_hardware_db(kProfiles);
  EXPECT_EQ(db.find_device("h100 sxm"), db.find_device("H100 SXM"));
  EXPECT_EQ(db.find_device("H101"), nullptr);
  try {
    db.device("A100");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'A100 40GB' or 'A100 80GB'?"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(db.link("NVLink 5"), Error);
}

TEST(HardwareDb, MatchCpuModel) {
  const HardwareDb db = load_hardware_db(kProfiles);
  const DeviceSpec* epyc = db.match_cpu_model("AMD EPYC 9654 96-Core Processor");
  ASSERT_NE(epyc, nullptr);
  EXPECT_EQ(epyc->name, "AMD EPYC 9654");
  EXPECT_EQ(db.match_cpu_model("AMD EPYC"), nullptr);
  EXPECT_EQ(db.match_cpu_model("NVIDIA H100 SXM"), nullptr);  // GPUs are not CPUs
}

TEST(HardwareDb, BadUnitNamesFileLineAndField) {
  const std::string path = kData + "db_bad_bandwidth.yaml";
  EXPECT_EQ(load_error(path), path +
                                  ":7: device 'H100 SXM': field 'memory_bandwidth' must be a number with a "
                                  "unit like '3.35 TB/s', not '3.35 TB'");
}

TEST(HardwareDb, UnknownFieldSuggestsTheRightOne) {
  const std::string msg = load_error(kData + "db_unknown_field.yaml");
  EXPECT_NE(
      msg.find("db_unknown_field.yaml:7: device 'A100 80GB': field 'memory_bandwith' is not known; did you "
               "mean 'memory_bandwidth'?"),
      std::string::npos)
      << msg;
}

TEST(HardwareDb, MissingFieldPointsAtTheEntry) {
  const std::string msg = load_error(kData + "db_missing_tdp.yaml");
  EXPECT_NE(msg.find("db_missing_tdp.yaml:3: device 'T4': field 'tdp' is missing"), std::string::npos) << msg;
}

TEST(HardwareDb, BadDtype) {
  const std::string msg = load_error(kData + "db_bad_dtype.yaml");
  EXPECT_NE(msg.find("db_bad_dtype.yaml:7: device 'L4': field 'peak_flops.fp8' is not a dtype"),
            std::string::npos)
      << msg;
}

TEST(HardwareDb, DuplicateNames) {
  const std::string msg = load_error(kData + "db_duplicate.yaml");
  EXPECT_NE(msg.find("db_duplicate.yaml:4:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'nvlink 4' twice"), std::string::npos) << msg;
}

TEST(HardwareDb, SyntaxErrorAndMissingFile) {
  const std::string msg = load_error(kData + "db_syntax.yaml");
  EXPECT_NE(msg.find("db_syntax.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("YAML syntax error"), std::string::npos) << msg;
  EXPECT_EQ(load_error(kData + "nope.yaml"), "cannot read '" + kData + "nope.yaml': no such file");
}

TEST(HardwareDb, ParseFromText) {
  const HardwareDb db = parse_hardware_db(
      "devices:\n  - {name: X, kind: other, peak_flops: {f32: 1 TFLOP/s}, memory: 1 GiB,\n"
      "     memory_bandwidth: 100 GB/s, tdp: 50 W, idle_power: 5 W}\n",
      "inline");
  ASSERT_EQ(db.devices.size(), 1u);
  EXPECT_EQ(db.devices[0].kind, DeviceKind::kOther);
  EXPECT_EQ(db.devices[0].memory.value(), 1LL << 30);
  EXPECT_DOUBLE_EQ(db.devices[0].idle_power.value(), 5.0);
  EXPECT_THROW(parse_hardware_db("version: 2\n", "inline"), Error);
  EXPECT_THROW(parse_hardware_db("- a\n- b\n", "inline"), Error);
}

}  // namespace
}  // namespace partita

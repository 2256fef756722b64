// Power caps against a fake powercap tree and the fake NVML library: applied, checked against what the
// device accepts, and put back afterwards, also when a later cap fails.
#include "partita/hardware/power_cap.h"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "fake_powercap.h"
#include "partita/core/error.h"
#include "partita/core/json_io.h"

namespace partita {
namespace {

using testing::FakePowercap;

// Two packages limited to 120 W (at most 200 W).
void two_packages(FakePowercap& p) {
  for (const char* zone : {"intel-rapl:0", "intel-rapl:1"}) {
    p.zone(zone, std::string("package-") + zone[11], 1000, 1'000'000'000);
    p.write(std::string(zone) + "/constraint_0_power_limit_uw", "120000000");
    p.write(std::string(zone) + "/constraint_0_max_power_uw", "200000000");
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PowerCap, ParsesDeviceAndWatts) {
  EXPECT_EQ(parse_power_cap("cuda:1:250").device, "cuda:1");
  EXPECT_EQ(parse_power_cap("cuda:1:250").watts, Watts(250));
  EXPECT_EQ(parse_power_cap("cpu:95.5").device, "cpu");
  EXPECT_EQ(parse_power_cap("cpu:95.5").watts, Watts(95.5));
  EXPECT_NE(error_of([] { parse_power_cap("cpu"); }).find("write DEVICE:WATTS"), std::string::npos);
  EXPECT_NE(error_of([] { parse_power_cap("cuda:0:lots"); }).find("'lots' is not a number"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_power_cap("cpu:-5"); }).find("positive"), std::string::npos);
  EXPECT_NE(error_of([] { parse_power_cap("cpu:0:40"); }).find("only cuda:N and cpu"), std::string::npos);
}

TEST(PowerCap, CapsEveryCpuPackageAndRestoresThem) {
  FakePowercap p;
  two_packages(p);
  const Rapl rapl(p.root());
  const Nvml no_nvml("libpartita-no-such-nvml.so.1");
  {
    PowerCaps caps({parse_power_cap("cpu:95")}, no_nvml, rapl);
    EXPECT_EQ(p.read("intel-rapl:0/constraint_0_power_limit_uw"), "95000000");
    EXPECT_EQ(p.read("intel-rapl:1/constraint_0_power_limit_uw"), "95000000");
    ASSERT_EQ(caps.applied().size(), 2u);
    EXPECT_EQ(caps.applied()[0], "cpu package-0 at 95 W (was 120 W)");
  }
  EXPECT_EQ(p.read("intel-rapl:0/constraint_0_power_limit_uw"), "120000000");
  EXPECT_EQ(p.read("intel-rapl:1/constraint_0_power_limit_uw"), "120000000");
  // Above what the package accepts: refused, nothing changed.
  EXPECT_NE(
      error_of([&] { PowerCaps({parse_power_cap("cpu:250")}, no_nvml, rapl); }).find("its most is 200 W"),
      std::string::npos);
  EXPECT_EQ(p.read("intel-rapl:0/constraint_0_power_limit_uw"), "120000000");
}

TEST(PowerCap, CapsAGpuThroughNvmlAndRestoresIt) {
  const Nvml nvml(PARTITA_FAKE_NVML);
  ASSERT_TRUE(nvml.available()) << nvml.error();
  const Rapl no_rapl("/nonexistent/powercap");
  ASSERT_TRUE(nvml.power_range(0).has_value());
  EXPECT_EQ(nvml.power_range(0)->min, Watts(200));
  {
    PowerCaps caps({parse_power_cap("cuda:0:300")}, nvml, no_rapl);
    EXPECT_EQ(nvml.device_info(0).power_limit, Watts(300));
    EXPECT_EQ(caps.applied(), (std::vector<std::string>{"cuda:0 at 300 W (was 700 W)"}));
  }
  EXPECT_EQ(nvml.device_info(0).power_limit, Watts(700));
  EXPECT_NE(error_of([&] {
              PowerCaps({parse_power_cap("cuda:0:100")}, nvml, no_rapl);
            }).find("it accepts 200 to 700 W"),
            std::string::npos);
  // The fake's GPU 1 refuses, as a GPU does to a user who is not root.
  EXPECT_NE(error_of([&] { PowerCaps({parse_power_cap("cuda:1:300")}, nvml, no_rapl); }).find("needs root"),
            std::string::npos);
  EXPECT_NE(error_of([&] { PowerCaps({parse_power_cap("cuda:7:300")}, nvml, no_rapl); }).find("NVML sees 2"),
            std::string::npos);
}

TEST(PowerCap, ACapThatFailsUndoesTheOnesBeforeIt) {
  FakePowercap p;
  two_packages(p);
  const Rapl rapl(p.root());
  const Nvml nvml(PARTITA_FAKE_NVML);
  const std::string why = error_of([&] {
    PowerCaps({parse_power_cap("cpu:90"), parse_power_cap("cuda:0:300"), parse_power_cap("cuda:1:300")}, nvml,
              rapl);
  });
  EXPECT_NE(why.find("cuda:1"), std::string::npos) << why;
  EXPECT_EQ(p.read("intel-rapl:0/constraint_0_power_limit_uw"), "120000000");
  EXPECT_EQ(p.read("intel-rapl:1/constraint_0_power_limit_uw"), "120000000");
  EXPECT_EQ(nvml.device_info(0).power_limit, Watts(700));
}

TEST(PowerCap, NothingToCapWithIsAClearError) {
  const Rapl no_rapl("/nonexistent/powercap");
  const Nvml no_nvml("libpartita-no-such-nvml.so.1");
  EXPECT_NE(error_of([&] {
              PowerCaps({parse_power_cap("cpu:50")}, no_nvml, no_rapl);
            }).find("cannot cap the power of the CPU: /nonexistent/powercap is absent"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              PowerCaps({parse_power_cap("cuda:0:250")}, no_nvml, no_rapl);
            }).find("cannot cap the power of cuda:0: NVML not available"),
            std::string::npos);
}

// A process id that no longer runs: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

void write_journal(const std::string& dir, pid_t pid, const std::string& root, double was, double cap) {
  std::filesystem::create_directories(dir);
  write_json_file(dir + "/" + std::to_string(pid) + ".json",
                  Json{{"format", "partita-power-caps"},
                       {"pid", pid},
                       {"powercap_root", root},
                       {"limits", Json::array({Json{{"device", "cpu package-0"},
                                                    {"gpu", false},
                                                    {"index", 0},
                                                    {"was_w", was},
                                                    {"cap_w", cap}}})}});
}

TEST(PowerCapJournal, WrittenBeforeTheCapsAndRemovedOnceTheyAreBack) {
  FakePowercap p;
  two_packages(p);
  const Rapl rapl(p.root());
  const Nvml no_nvml("libpartita-no-such-nvml.so.1");
  const std::string dir = p.root() + "/journals";
  const std::string mine = dir + "/" + std::to_string(::getpid()) + ".json";
  {
    PowerCaps caps({parse_power_cap("cpu:95")}, no_nvml, rapl, dir);
    const Json j = read_json_file(mine);
    EXPECT_EQ(j["powercap_root"], p.root());
    ASSERT_EQ(j["limits"].size(), 2u);
    EXPECT_EQ(j["limits"][1]["device"], "cpu package-1");
    EXPECT_EQ(j["limits"][1]["was_w"], 120.0);
    EXPECT_EQ(j["limits"][1]["cap_w"], 95.0);
    // A running process's journal is not recovered, not even by itself.
    EXPECT_TRUE(recover_power_caps(dir, no_nvml, rapl).empty());
    EXPECT_EQ(p.read("intel-rapl:0/constraint_0_power_limit_uw"), "95000000");
  }
  EXPECT_FALSE(std::filesystem::exists(mine));
}

TEST(PowerCapJournal, RecoveryPutsBackWhatADeadProcessLeft) {
  FakePowercap p;
  two_packages(p);
  const Rapl rapl(p.root());
  const Nvml no_nvml("libpartita-no-such-nvml.so.1");
  const std::string dir = p.root() + "/journals";
  EXPECT_TRUE(recover_power_caps(p.root() + "/none", no_nvml, rapl).empty());  // no directory: nothing

  p.write("intel-rapl:0/constraint_0_power_limit_uw", "95000000");  // the dead run's cap still holds
  const pid_t dead = dead_pid();
  write_journal(dir, dead, p.root(), 120, 95);
  const pid_t other_tree = dead_pid();
  write_journal(dir, other_tree, "/some/other/powercap", 120, 95);  // not this tree's to undo
  const auto left = left_power_caps(dir, rapl);                     // read only
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].pid, dead);
  EXPECT_EQ(left[0].device, "cpu package-0");
  EXPECT_EQ(left[0].was, Watts(120));
  EXPECT_EQ(left[0].cap, Watts(95));
  EXPECT_EQ(p.read("intel-rapl:0/constraint_0_power_limit_uw"), "95000000");
  auto lines = recover_power_caps(dir, no_nvml, rapl);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("put cpu package-0 back at 120 W (capped at 95 W by partita process " +
                          std::to_string(dead)),
            std::string::npos)
      << lines[0];
  EXPECT_EQ(p.read("intel-rapl:0/constraint_0_power_limit_uw"), "120000000");
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + std::to_string(dead) + ".json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/" + std::to_string(other_tree) + ".json"));

  // A limit that no longer holds the cap (a reboot, someone's change) is left and named.
  write_journal(dir, dead, p.root(), 120, 95);
  p.write("intel-rapl:0/constraint_0_power_limit_uw", "110000000");
  lines = recover_power_caps(dir, no_nvml, rapl);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("left cpu package-0 at 110 W"), std::string::npos) << lines[0];
  EXPECT_EQ(p.read("intel-rapl:0/constraint_0_power_limit_uw"), "110000000");
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + std::to_string(dead) + ".json"));
}

}  // namespace
}  // namespace partita

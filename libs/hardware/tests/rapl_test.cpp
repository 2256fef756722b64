// The RAPL reader against a powercap tree made in a temporary directory (this VM has none).
#include "partita/hardware/rapl.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "fake_powercap.h"
#include "partita/core/error.h"

namespace partita {
namespace {

namespace fs = std::filesystem;
using testing::FakePowercap;

TEST(Rapl, AddsThePackagesAndNotTheirSubzones) {
  FakePowercap p;
  p.zone("intel-rapl:0", "package-0", 1'000'000, 262'143'328'850);
  p.zone("intel-rapl:1", "package-1", 5'000'000, 262'143'328'850);
  p.zone("intel-rapl:0:0", "core", 700'000, 262'143'328'850);  // part of package 0
  const Rapl rapl(p.root());
  ASSERT_TRUE(rapl.available()) << rapl.error();
  EXPECT_EQ(rapl.packages(), (std::vector<std::string>{"package-0", "package-1"}));
  const auto before = rapl.read();
  ASSERT_EQ(before.size(), 2u);
  EXPECT_DOUBLE_EQ(before[0].value(), 1.0);
  p.set("intel-rapl:0", 3'500'000);    // +2.5 J
  p.set("intel-rapl:1", 5'250'000);    // +0.25 J
  p.set("intel-rapl:0:0", 9'000'000);  // ignored
  EXPECT_NEAR(rapl.used(before, rapl.read()).value(), 2.75, 1e-9);
}

TEST(Rapl, ACounterThatWrappedCountsThroughItsRange) {
  FakePowercap p;
  p.zone("intel-rapl:0", "package-0", 9'000'000, 10'000'000);  // wraps at 10 J
  const Rapl rapl(p.root());
  ASSERT_TRUE(rapl.available()) << rapl.error();
  const auto before = rapl.read();
  p.set("intel-rapl:0", 500'000);  // 9 J -> 10 J (wrap) -> 0.5 J: 1.5 J used
  EXPECT_NEAR(rapl.used(before, rapl.read()).value(), 1.5, 1e-9);
}

TEST(Rapl, SaysWhyItIsNotAvailable) {
  const Rapl absent("/nonexistent/powercap");
  EXPECT_FALSE(absent.available());
  EXPECT_NE(absent.error().find("is absent"), std::string::npos) << absent.error();

  FakePowercap empty;
  const Rapl no_zone(empty.root());
  EXPECT_FALSE(no_zone.available());
  EXPECT_NE(no_zone.error().find("no intel-rapl:N package zone"), std::string::npos) << no_zone.error();

  FakePowercap garbage;
  garbage.zone("intel-rapl:0", "package-0", 1, 10);
  garbage.write("intel-rapl:0/energy_uj", "not a number");
  const Rapl unreadable(garbage.root());
  EXPECT_FALSE(unreadable.available());
  EXPECT_NE(unreadable.error().find("energy_uj is unreadable"), std::string::npos) << unreadable.error();
}

TEST(Rapl, ACounterThatVanishesIsAClearError) {
  FakePowercap p;
  p.zone("intel-rapl:0", "package-0", 1, 10);
  const Rapl rapl(p.root());
  ASSERT_TRUE(rapl.available());
  fs::remove(fs::path(p.root()) / "intel-rapl:0" / "energy_uj");
  try {
    rapl.read();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot read the RAPL counter"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace partita

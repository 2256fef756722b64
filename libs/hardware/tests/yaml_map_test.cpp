#include "partita/hardware/yaml_map.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace {

// The error `read` throws on the map parsed from `yaml` (file label "f.yaml", context "thing 'a'").
template <typename Read>
std::string error_of(const std::string& yaml, Read read) {
  try {
    read(YamlMap("f.yaml", load_yaml_text(yaml, "f.yaml"), "thing 'a'"));
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(YamlMap, WholeNumbersAreTakenOnlyWhole) {
  const YamlMap map("f.yaml", load_yaml_text("n: 42\nm: -7\nlist: [1, 2, 3]\n", "f.yaml"), "thing 'a'");
  EXPECT_EQ(map.integer("n", 0), 42);
  EXPECT_EQ(map.integer("m", 0), -7);
  EXPECT_EQ(map.integer("absent", 5), 5);
  EXPECT_EQ(map.integer_list("list", {}), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(map.integer_list("absent", {9}), (std::vector<int>{9}));
  EXPECT_EQ(map.integer("n2", 2147483647), 2147483647);

  const auto integer = [](const YamlMap& m) { m.integer("n", 0); };
  const std::string whole = "field 'n' must be a whole number up to 2147483647, not ";
  // std::stoi alone read "1.5" as 1; yaml-cpp's as<int>(fallback) gave the fallback for all of these.
  EXPECT_EQ(error_of("x: 1\nn: 1.5\n", integer), "f.yaml:2: thing 'a': " + whole + "'1.5'");
  EXPECT_EQ(error_of("n: 2147483648\n", integer), "f.yaml:1: thing 'a': " + whole + "'2147483648'");
  EXPECT_EQ(error_of("n: 99999999999999999999\n", integer),
            "f.yaml:1: thing 'a': " + whole + "'99999999999999999999'");
  EXPECT_EQ(error_of("n: 12abc\n", integer), "f.yaml:1: thing 'a': " + whole + "'12abc'");
  EXPECT_EQ(error_of("n: [1]\n", integer), "f.yaml:1: thing 'a': field 'n' must be a whole number");

  const auto list = [](const YamlMap& m) { m.integer_list("n", {}); };
  EXPECT_EQ(error_of("n: 3\n", list),
            "f.yaml:1: thing 'a': field 'n' must be a list of whole numbers like [3, 4, 6, 3]");
  EXPECT_EQ(
      error_of("n:\n  - 1\n  - 2.5\n", list),
      "f.yaml:3: thing 'a': field 'n' item 2" + whole.substr(std::string("field 'n'").size()) + "'2.5'");
  EXPECT_EQ(
      error_of("n: [1, {b: 2}]\n", list),
      "f.yaml:1: thing 'a': field 'n' item 2 must be a whole number up to 2147483647, not a list or a map");
}

TEST(YamlMap, FieldsAreNamedWithTheirLineAndCloseMatches) {
  EXPECT_EQ(
      error_of("name: a\ncolour: red\n",
               [](const YamlMap& m) {
                 m.reject_unknown({"name", "color"});
               }),
      "f.yaml:2: thing 'a': field 'colour' is not known; did you mean 'color'? (known fields: name, color)");
  EXPECT_EQ(error_of("name: a\n", [](const YamlMap& m) { m.string("kind"); }),
            "f.yaml:1: thing 'a': field 'kind' is missing");
  EXPECT_EQ(error_of("name: [a]\n", [](const YamlMap& m) { m.string("name"); }),
            "f.yaml:1: thing 'a': field 'name' must be a string");
  EXPECT_EQ(error_of("- a\n", [](const YamlMap&) {}),
            "f.yaml:1: thing 'a' must be a map of 'field: value' lines");
  try {
    load_yaml_text("a: [1\n", "f.yaml");
    ADD_FAILURE() << "parsed";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("f.yaml:", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find(": YAML syntax error: "), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace partita

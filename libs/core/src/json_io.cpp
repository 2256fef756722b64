#include "partita/core/json_io.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "partita/core/error.h"

namespace partita {

Json read_json_file(const std::string& path) {
  std::ifstream in(path);
  PARTITA_CHECK(in.good(), "cannot open '", path, "': check that the file exists and is readable");
  try {
    return Json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    PARTITA_FAIL("'", path, "' is not valid JSON (", e.what(), ")");
  }
}

void write_text_file(const std::string& path, const std::string& text) {
  if (path == "-") {
    std::cout << text << std::flush;
    return;
  }
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const fs::path tmp = target.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    PARTITA_CHECK(out.good(), "cannot write '", tmp.string(), "': check the folder exists and is writable");
    out << text;
    out.flush();
    PARTITA_CHECK(out.good(), "writing '", tmp.string(), "' failed (disk full?)");
  }
  fs::rename(tmp, target);
}

void write_json_file(const std::string& path, const Json& j) { write_text_file(path, j.dump(2) + "\n"); }

}  // namespace partita

#include "partita/core/json_io.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <system_error>

#include <unistd.h>

#include "partita/core/error.h"

namespace partita {
namespace {

// create_directories with an error led by `what` ("--json 'out/a.json'"), what was to be written there.
void make_folder(const std::filesystem::path& dir, const std::string& what) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  PARTITA_CHECK(!ec, what, ": cannot create the folder '", dir.string(), "' (", ec.message(),
                "); choose a writable path");
}

// Makes `dir` and checks that a file can be created in it; `what` ("--json 'out/a.json'") leads the error.
void check_writable_folder(const std::string& dir, const std::string& what) {
  namespace fs = std::filesystem;
  make_folder(dir, what);
  const fs::path probe = fs::path(dir) / (".partita-write-check-" + std::to_string(::getpid()));
  {
    std::ofstream out(probe, std::ios::binary | std::ios::trunc);
    PARTITA_CHECK(out.good(), what, ": cannot write files in '", dir, "'; choose a writable path");
  }
  std::error_code ec;
  fs::remove(probe, ec);
}

}  // namespace

Json read_json_file(const std::string& path) {
  std::ifstream in(path);
  PARTITA_CHECK(in.good(), "cannot open '", path, "': check that the file exists and is readable");
  try {
    return Json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    PARTITA_FAIL("'", path, "' is not valid JSON (", e.what(), ")");
  }
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  PARTITA_CHECK(in.good(), "cannot read '", path,
                "': ", std::filesystem::exists(path) ? "permission denied or not a file" : "no such file");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text_file(const std::string& path, const std::string& text) {
  if (path == "-") {
    std::cout << text << std::flush;
    return;
  }
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.has_parent_path()) make_folder(target.parent_path(), "'" + path + "'");
  // A temporary of this writer's own: partita processes (a launch's ranks, concurrent commands) write the
  // same cache files, and with one shared name a writer's rename found the file another had already moved
  // (and a reader could get one writer's text cut by another's). The last rename wins whole.
  static std::atomic<uint64_t> writes{0};
  const fs::path tmp =
      target.string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(writes.fetch_add(1));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    PARTITA_CHECK(out.good(), "cannot write '", tmp.string(), "': check the folder exists and is writable");
    out << text;
    out.flush();
    if (!out.good()) {
      std::error_code ignored;
      fs::remove(tmp, ignored);
      PARTITA_FAIL("writing '", tmp.string(), "' failed (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
  }
  PARTITA_CHECK(!ec, "cannot move '", tmp.string(), "' to '", path, "': ", ec.message());
}

void check_output_folder(const std::string& dir, const std::string& option) {
  check_writable_folder(dir, option + " '" + dir + "'");
}

void check_output_path(const std::string& path, const std::string& option) {
  if (path.empty() || path == "-") return;
  namespace fs = std::filesystem;
  const fs::path target(path);
  PARTITA_CHECK(!fs::is_directory(target), option, " '", path, "' is a folder; name a file");
  check_writable_folder(target.has_parent_path() ? target.parent_path().string() : ".",
                        option + " '" + path + "'");
}

void write_json_file(const std::string& path, const Json& j) { write_text_file(path, j.dump(2) + "\n"); }

}  // namespace partita

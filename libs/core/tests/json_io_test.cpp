#include "partita/core/json_io.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "partita/core/error.h"

namespace partita {
namespace fs = std::filesystem;

namespace {

// A fresh folder under the test's temporary directory, removed at the end.
struct TempFolder {
  fs::path path;
  TempFolder()
      : path(fs::temp_directory_path() /
             ("partita-json-io-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempFolder() { fs::remove_all(path); }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(JsonIo, CheckOutputPathMakesTheFolderAndLeavesNothingBehind) {
  TempFolder tmp;
  const fs::path target = tmp.path / "a" / "b" / "plan.json";
  check_output_path(target.string(), "--json");
  EXPECT_TRUE(fs::is_directory(target.parent_path()));
  EXPECT_TRUE(fs::is_empty(target.parent_path()));  // the probe file is gone
  EXPECT_FALSE(fs::exists(target));
  check_output_path("-", "--json");  // stdout
  check_output_path("", "--json");   // not given
}

TEST(JsonIo, CheckOutputPathNamesTheOptionWhenItCannotWrite) {
  TempFolder tmp;
  const fs::path file = tmp.path / "file.txt";
  std::ofstream(file) << "x";
  // A folder cannot be made below a file (whoever runs the test, root included).
  const std::string below_file = (file / "out.json").string();
  const std::string e = error_of([&] { check_output_path(below_file, "--trace"); });
  EXPECT_NE(e.find("--trace '" + below_file + "': cannot create the folder"), std::string::npos) << e;
  EXPECT_NE(e.find("choose a writable path"), std::string::npos) << e;
  const std::string folder = error_of([&] { check_output_path(tmp.path.string(), "--json"); });
  EXPECT_NE(folder.find("is a folder; name a file"), std::string::npos) << folder;
  const std::string out = error_of([&] { check_output_folder(below_file, "--out"); });
  EXPECT_NE(out.find("--out '" + below_file + "'"), std::string::npos) << out;
}

TEST(JsonIo, WriteTextFileReportsAFolderItCannotMakeAsAnError) {
  TempFolder tmp;
  const fs::path file = tmp.path / "file.txt";
  std::ofstream(file) << "x";
  // Was a std::filesystem::filesystem_error (reported as an internal error).
  const std::string e = error_of([&] { write_text_file((file / "x" / "a.json").string(), "{}"); });
  EXPECT_NE(e.find("cannot create the folder"), std::string::npos) << e;
  write_text_file((tmp.path / "ok" / "a.json").string(), "{}");
  EXPECT_EQ(read_json_file((tmp.path / "ok" / "a.json").string()), Json::object());
}

// Writers of one file at once (the ranks of a launch profile into one op-time cache): each write succeeds and
// the file is always one writer's whole text. With one shared temporary name a writer's rename failed
// ("cannot move"), or moved a file another writer was still filling.
TEST(JsonIo, WritersOfOneFileAtOnceEachLeaveAWholeFile) {
  TempFolder tmp;
  const std::string file = (tmp.path / "cache.json").string();
  const std::string a(1 << 16, 'a'), b(1 << 16, 'b');
  std::atomic<int> failures{0}, torn{0};
  std::vector<std::thread> writers;
  for (const std::string* text : {&a, &b}) {
    writers.emplace_back([&, text] {
      for (int i = 0; i < 200; ++i) {
        try {
          write_text_file(file, *text);
        } catch (const Error&) {
          ++failures;
        }
        std::ifstream in(file, std::ios::binary);
        const std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (got != a && got != b) ++torn;
      }
    });
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(torn.load(), 0);
  int left = 0;
  for (const auto& entry : fs::directory_iterator(tmp.path)) left += entry.path().filename() != "cache.json";
  EXPECT_EQ(left, 0) << "temporary files left behind";
}

}  // namespace partita

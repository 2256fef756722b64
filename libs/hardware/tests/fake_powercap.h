#pragma once
// Test support: a powercap sysfs tree in a temporary directory (this VM has none), removed afterwards.
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace partita::testing {

class FakePowercap {
 public:
  FakePowercap()
      : root_(std::filesystem::temp_directory_path() /
              ("partita-rapl-" + std::to_string(::getpid()) + "-" + std::to_string(next_id_++))) {
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
  }
  ~FakePowercap() { std::filesystem::remove_all(root_); }
  std::string root() const { return root_.string(); }
  // A zone directory with its name, counter and wrap point.
  void zone(const std::string& dir, const std::string& name, uint64_t uj, uint64_t range_uj) {
    std::filesystem::create_directories(root_ / dir);
    write(dir + "/name", name);
    write(dir + "/max_energy_range_uj", std::to_string(range_uj));
    set(dir, uj);
  }
  void set(const std::string& dir, uint64_t uj) { write(dir + "/energy_uj", std::to_string(uj)); }
  void write(const std::string& file, const std::string& text) {
    std::ofstream(root_ / file) << text << "\n";
  }
  // A file's first line ("" when absent).
  std::string read(const std::string& file) const {
    std::ifstream in(root_ / file);
    std::string line;
    std::getline(in, line);
    return line;
  }

 private:
  static inline std::atomic<int> next_id_{0};
  std::filesystem::path root_;
};

}  // namespace partita::testing

#pragma once
// Reading and writing JSON files with errors that name the file. "-" means stdout for writing.
#include <string>

#include <nlohmann/json.hpp>

namespace partita {

using Json = nlohmann::ordered_json;

Json read_json_file(const std::string& path);
// Writes atomically (temporary file, then rename) so a crash never leaves half a file; "-" prints to stdout.
void write_json_file(const std::string& path, const Json& j);
// Same atomic write for any text.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace partita

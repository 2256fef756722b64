#pragma once
// Reading and writing files (JSON or any text) with errors that name the file. "-" means stdout for writing.
#include <string>

#include <nlohmann/json.hpp>

namespace partita {

using Json = nlohmann::ordered_json;

Json read_json_file(const std::string& path);
// The whole file as text; throws "cannot read 'path': no such file" (or "permission denied or not a file").
std::string read_text_file(const std::string& path);
// Writes atomically (temporary file, then rename) so a crash never leaves half a file; "-" prints to stdout.
void write_json_file(const std::string& path, const Json& j);
// Same atomic write for any text.
void write_text_file(const std::string& path, const std::string& text);

// Makes the folder that will hold `path` and checks that a file can be written there, so a command that works
// for minutes before writing its results fails at the start instead ("-" passes). `option` names the flag in
// the error ("--json"). Writes nothing that stays.
void check_output_path(const std::string& path, const std::string& option);
// Makes the folder `dir` (and its parents) and checks that files can be written in it.
void check_output_folder(const std::string& dir, const std::string& option);

}  // namespace partita

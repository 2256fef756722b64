#pragma once
// Minimal leveled logging to stderr. Progress lines go to stderr so stdout stays parseable (`--json -`).
#include <string_view>

namespace partita {

enum class LogLevel { kDebug, kInfo, kWarning, kError, kQuiet };

void set_log_level(LogLevel level);
LogLevel log_level();
void log(LogLevel level, std::string_view message);
inline void log_info(std::string_view m) { log(LogLevel::kInfo, m); }
inline void log_warning(std::string_view m) { log(LogLevel::kWarning, m); }
inline void log_debug(std::string_view m) { log(LogLevel::kDebug, m); }

}  // namespace partita

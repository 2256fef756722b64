#pragma once
// "Did you mean" suggestions for names typed by users (profile, link and field names).
#include <string>
#include <string_view>
#include <vector>

namespace partita {

// Case-insensitive Levenshtein distance.
int edit_distance(std::string_view a, std::string_view b);
// Up to `max_results` candidates closest to `name`, best first: those containing `name` (case-insensitively),
// then those within edit distance max(1, |name|/3). Pure, thread-safe.
std::vector<std::string> close_matches(std::string_view name, const std::vector<std::string>& candidates,
                                       int max_results = 3);
// "; did you mean 'A' or 'B'?" or "" when there is no close match.
std::string did_you_mean(std::string_view name, const std::vector<std::string>& candidates);

}  // namespace partita

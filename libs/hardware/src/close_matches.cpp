#include "partita/hardware/close_matches.h"

#include <algorithm>
#include <cctype>

namespace partita {

namespace {
std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}
}  // namespace

int edit_distance(std::string_view a_in, std::string_view b_in) {
  const std::string a = lower(a_in), b = lower(b_in);
  std::vector<int> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    int diagonal = row[0];
    row[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      const int above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::vector<std::string> close_matches(std::string_view name, const std::vector<std::string>& candidates,
                                       int max_results) {
  struct Scored {
    int distance;
    std::string name;
  };
  const int limit = std::max<int>(1, static_cast<int>(name.size()) / 3);
  const std::string needle = lower(name);
  std::vector<Scored> scored;
  for (const auto& c : candidates) {
    int d = edit_distance(name, c);
    // "A100" should find "A100 40GB" and "A100 80GB" first: a name contained in a candidate ranks best.
    if (!needle.empty() && lower(c).find(needle) != std::string::npos) d = 0;
    if (d <= limit) scored.push_back({d, c});
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const Scored& x, const Scored& y) { return x.distance < y.distance; });
  std::vector<std::string> out;
  for (const auto& s : scored) {
    if (static_cast<int>(out.size()) == max_results) break;
    out.push_back(s.name);
  }
  return out;
}

std::string did_you_mean(std::string_view name, const std::vector<std::string>& candidates) {
  const auto matches = close_matches(name, candidates);
  if (matches.empty()) return "";
  std::string s = "; did you mean ";
  for (size_t i = 0; i < matches.size(); ++i) {
    if (i > 0) s += i + 1 == matches.size() ? " or " : ", ";
    s += "'" + matches[i] + "'";
  }
  return s + "?";
}

}  // namespace partita

#pragma once
// Shared by the HTML report tests: counting substrings and cutting one SVG element out of a page.
#include <string>

namespace partita::testing {

inline int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The SVG element `index` (0-based) of class `cls`, up to its closing tag ("" when there is none).
inline std::string svg_of(const std::string& html, const std::string& cls, int index = 0) {
  size_t at = 0;
  for (int i = 0; i <= index; ++i) {
    at = html.find("<svg class=\"" + cls + "\"", i ? at + 1 : 0);
    if (at == std::string::npos) return "";
  }
  return html.substr(at, html.find("</svg>", at) - at);
}

}  // namespace partita::testing

#pragma once
// Errors. A user or input error throws partita::Error through PARTITA_CHECK with a message that says what
// was wrong, with which value, and what to do. A broken invariant (a bug in partita) is PARTITA_ASSERT,
// which throws InternalError naming the file and line.
#include <sstream>
#include <stdexcept>
#include <string>

namespace partita {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace partita

#define PARTITA_CHECK(cond, ...)                                      \
  do {                                                                \
    if (!(cond)) {                                                    \
      throw ::partita::Error(::partita::detail::concat(__VA_ARGS__)); \
    }                                                                 \
  } while (0)

#define PARTITA_FAIL(...) throw ::partita::Error(::partita::detail::concat(__VA_ARGS__))

#define PARTITA_ASSERT(cond, ...)                                                                       \
  do {                                                                                                  \
    if (!(cond)) {                                                                                      \
      throw ::partita::InternalError(::partita::detail::concat(                                         \
          "internal error at ", __FILE__, ":", __LINE__, ": ", #cond, " " __VA_OPT__(, ) __VA_ARGS__)); \
    }                                                                                                   \
  } while (0)

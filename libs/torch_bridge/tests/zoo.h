#pragma once
// Paths of the generated model zoo for tests (built by the model_zoo target into the build folder).
#include <string>

namespace partita::testing {

inline std::string zoo_model(const std::string& name) {
  return std::string(PARTITA_MODELS_DIR) + "/" + name + ".pt";
}

}  // namespace partita::testing

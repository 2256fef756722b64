#pragma once
// Conversions between partita's DType and torch's ScalarType.
#include <c10/core/ScalarType.h>

#include "partita/graph/tensor_meta.h"

namespace partita {

DType from_torch(c10::ScalarType type);
c10::ScalarType to_torch(DType dtype);  // throws partita::Error for kOther

}  // namespace partita

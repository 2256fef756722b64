#pragma once
// Human-readable numbers for tables and messages.
#include <string>

#include "partita/core/units.h"

namespace partita {

std::string format_bytes(Bytes b);      // "1.50 MiB"
std::string format_flops(Flops f);      // "3.64 GFLOP"
std::string format_count(double n);     // "11.7 M"
std::string format_seconds(Seconds s);  // "12.3 ms"

}  // namespace partita

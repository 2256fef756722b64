#pragma once
// Real memory of a step on the CPU: a counting wrapper around c10's CPU allocator.
//
// MemoryMeter::install() replaces c10's CPU allocator (once per process, never undone: tensors allocated
// through the wrapper must be freed through it) with one that forwards to the previous allocator and counts
// the bytes of live tensor storages. Counts cover everything ATen allocates for CPU tensors (outputs,
// gradients, most temporaries); they do not cover memory libraries take with malloc themselves (oneDNN and
// OpenBLAS scratch buffers, the autograd graph's nodes), nor tensors allocated before install(). So install
// the meter before loading the model when its parameters should count.
//
// Thread safety: counters are atomics; the allocator may be used from any thread. reset_peak() and
// peak_bytes() are safe from any thread (peaks from concurrent steps mix, as they would in memory).
#include "partita/core/units.h"

namespace partita {

class MemoryMeter {
 public:
  // Installs the counting allocator (idempotent). Returns the meter.
  static MemoryMeter& install();
  // Whether install() has been called in this process.
  static bool installed();

  // Bytes of CPU tensor storage allocated through the meter and not yet freed.
  Bytes current_bytes() const;
  // Highest current_bytes() since install() or the last reset_peak().
  Bytes peak_bytes() const;
  // Sets the peak to the current figure (call before the step to measure).
  void reset_peak();
  // Number of allocations since install() (to tell "nothing happened" from "freed again").
  int64_t allocations() const;

 private:
  MemoryMeter() = default;
};

}  // namespace partita

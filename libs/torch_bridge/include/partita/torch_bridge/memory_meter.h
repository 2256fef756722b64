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
//
// What a peak holds (a developer's aid, off unless the environment variable PARTITA_PEAK_ALLOCATIONS is set
// when install() runs): the meter then also keeps every live allocation's size, thread and call stack, copies
// them each time the peak rises, and write_peak_allocations() prints that copy grouped by thread and by the
// innermost ATen kernels, autograd functions and partita functions on the stack. Unlike
// scripts/memory-timeline (gdb, which stops every thread at each allocation) the threads run freely, so a
// peak that depends on how concurrent workers interleave shows as it is. Slow: a stack walk and a lock per
// allocation; for finding out what a peak holds, not for timing. `partita run` prints it after its summary.
#include <cstdio>

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

  // Whether PARTITA_PEAK_ALLOCATIONS was set at install() (see above).
  static bool tracing_peak();
  // The allocations alive at the highest point since the last reset_peak(), grouped (see above), to `out`;
  // nothing unless tracing_peak().
  void write_peak_allocations(std::FILE* out) const;

 private:
  MemoryMeter() = default;
};

}  // namespace partita

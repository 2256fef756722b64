#pragma once
// Keeps memory that LibTorch frees inside the process instead of handing it back to the kernel.
//
// Why: a training or inference step frees and allocates the same large tensors every step. With glibc's
// defaults, blocks above the (dynamic) mmap threshold are unmapped on free and the top of the heap is
// trimmed, so the next step touches fresh pages and takes a page fault per 4 KiB. On the VMs this project
// runs on a fault is expensive: a resnet18 training step at batch 2 (one thread) took 13,700 minor faults and
// 71-76 ms by default, 0 faults and 53 ms with the policy below (Debian python3-torch, same process setup;
// docs/status.md). PyTorch's CUDA caching allocator does the same for GPU memory.
//
// The policy: blocks up to 32 MiB (glibc's largest allowed mmap threshold) come from the heap, and the heap
// is never trimmed. The process's resident memory then stays at its peak.
namespace partita {

struct ProcessMemoryPolicy {
  bool applied = false;
  const char* why = "";  // when not applied
};

// Applies the policy unless PARTITA_MALLOC=default is set in the environment (or the C library is not
// glibc). Call once, early in main(), before worker threads start.
ProcessMemoryPolicy keep_freed_memory_in_process();
// Whether keep_freed_memory_in_process() applied the policy in this process (measured op times depend on
// it: the op-time cache keys on it).
bool freed_memory_kept_in_process();

}  // namespace partita

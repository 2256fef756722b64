#pragma once
// Cost of one optimizer step (the parameter update after the last backward of a training step).
//
// Model: the update is a chain of elementwise ops over parameter-sized tensors, one chain per trainable
// tensor, so it is memory-bound: time = passes x trainable bytes / memory bandwidth + ops x tensors x
// op_overhead, where a pass is one parameter-sized read or write. The counts follow LibTorch's own
// (non-foreach) implementations, zeroing the gradients included:
//   SGD          p -= lr g                                      3 passes, 1 op  (+1 pass, 1 op zeroing)
//   SGD momentum buf = m buf + g; p -= lr buf                   8 passes, 3 ops (+1, 1)
//   Adam         two moment updates, sqrt, scale, eps, addcdiv 21 passes, 8 ops (+1, 1)
//   AdamW        Adam plus the decoupled weight decay           23 passes, 9 ops (+1, 1)
// Assumption: every pass streams from main memory at the spec's bandwidth (the calibrated elementwise
// class's bandwidth and fixed cost per op when the spec has one). Adam's sqrt and division are
// compute-heavy on one core, so this is a lower bound there (bench/optimizer_step.py on this project's 2-core
// VM: Adam over resnet18's 46.8 MB took 40-44 ms at one thread, 20-28 ms at two); a measured update
// (search's SearchOptions::update_times) replaces it.
#include <vector>

#include "partita/core/units.h"
#include "partita/cost/memory.h"
#include "partita/hardware/device.h"

namespace partita {

struct UpdateWork {
  int passes = 0;          // parameter-sized reads and writes
  int ops_per_tensor = 0;  // elementwise ops launched per trainable tensor
};

// The work of one step of `optimizer`, zeroing the gradients included (see the table above).
UpdateWork optimizer_update_work(Optimizer optimizer);

// Time of one step of `optimizer` over `tensors` trainable tensors of `trainable` bytes in all on `spec`.
// Throws partita::Error when trainable bytes > 0 and the spec has no memory bandwidth, or tensors < 0.
Seconds optimizer_step_time(Bytes trainable, int tensors, Optimizer optimizer, const DeviceSpec& spec);

// The fixed cost of one tensor's update on a CPU, as the parameter bytes whose streaming takes as long: each
// tensor's step is a chain of about ten small ops (the table above), a few microseconds each, whatever its
// size. Fitted on this project's 2-core VM (2026-12-05, LibTorch 1.13 Adam on one thread, two parts of the
// CNN's step: one tensor of 72 KiB; ten of 62 KiB in all): 14-20 us per tensor and 0.7-1.3 us per KiB, so
// 15-19 KiB. Used to weigh tensors (split_update) and a CPU's share of a measured whole-model step.
inline constexpr Bytes kCpuUpdateTensorBytes{16 * 1024};

// How a step is split among the CPU workers of a plan whose devices are all CPUs (the engine's OptimizerParts
// and the simulator's update tasks both follow it, so the prediction splits as the run does): each trainable
// tensor, weighing its bytes plus kCpuUpdateTensorBytes, heaviest first (equal weights in order), goes to the
// worker that would finish it first: its weight so far plus this tensor's over its speed (threads over the
// plan's slowdown of that device; of equal finishes the first worker). Returns the worker of each tensor, in
// the order given. Throws partita::Error for no workers or a speed that is not positive.
std::vector<int> split_update(const std::vector<Bytes>& tensors, const std::vector<double>& speeds);

}  // namespace partita

#pragma once
// Random draws under activation checkpointing. A checkpointed stage runs its forward twice, without autograd
// and again in backward; its draws (dropout masks, noise) must be the same both times, or backward
// differentiates another forward than the one whose outputs went on (PyTorch's checkpoint keeps the RNG state
// for the same reason). Each worker's executor draws from a generator of its own (ExecutorOptions::generator,
// made by worker_generator): the first forward notes its state (draws_state), and the recompute runs from it
// inside a ReplayDraws, which then puts back the state it found, so later forwards draw on as before.
#include <cstdint>

#include <torch/torch.h>

#include "partita/torch_bridge/executor.h"

namespace partita::detail {

// A worker's generator: a CPU generator of its own, seeded from `seed`, its stage and replica, and the
// engine's first step (an engine that takes a run over after a rebalance does not draw the first steps'
// numbers again); workers sharing the CPU would otherwise interleave their draws on the default one,
// differently every run. A GPU worker, the only one on its device, uses the device's default generator.
at::Generator worker_generator(torch::Device device, uint64_t seed, int stage, int replica, int first_step);

// The state of `executor`'s generator; undefined when it draws from nothing of its own.
torch::Tensor draws_state(const Executor& executor);

class ReplayDraws {
 public:
  // Sets `executor`'s generator to `state` (a draws_state), when both are defined.
  ReplayDraws(const Executor& executor, const torch::Tensor& state);
  ~ReplayDraws();  // puts back the state the generator had
  ReplayDraws(const ReplayDraws&) = delete;
  ReplayDraws& operator=(const ReplayDraws&) = delete;

 private:
  at::Generator generator_;
  torch::Tensor resume_;
};

}  // namespace partita::detail

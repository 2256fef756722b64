#pragma once
// Random draws in the engine.
//
// Each worker's executor draws from a generator of its own (ExecutorOptions::generator, made by
// worker_generator), so workers sharing the CPU do not interleave their draws on LibTorch's default
// generator, differently every run. A worker of a tensor-parallel group has two executors over the same
// parameters (TensorExecutors): its own draws the numbers of nodes whose output is split (each rank's part
// gets its own dropout mask), the group's draws those of replicated nodes from a generator seeded alike on
// every rank, so every rank draws the same mask for the same replicated activation (Megatron-LM's
// model-parallel RNG tracker does the same); with a group of one they are what one device draws.
//
// Activation checkpointing runs a stage's forward twice, without autograd and again in backward; its draws
// must be the same both times, or backward differentiates another forward than the one whose outputs went
// on (PyTorch's checkpoint keeps the RNG state for the same reason). The first forward notes its generators'
// state (draws_state); the recompute runs from it inside a ReplayDraws, which then puts back the state it
// found, so later forwards draw on as before.
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "partita/torch_bridge/executor.h"

namespace partita::detail {

// A generator for the worker at `stage` and `place` (a replica's device index; for tensor groups see
// engine.cpp), seeded from `seed`, those two and the engine's first step (an engine that takes a run over
// after a rebalance does not draw the first steps' numbers again). On a GPU: the device's default generator
// (LibTorch 1.13 makes CUDA generators only through CUDA's own headers), so a GPU's workers share it.
at::Generator worker_generator(torch::Device device, uint64_t seed, int stage, int place, int first_step);

// The state of each of `executors`' generators (undefined for one without a generator of its own).
std::vector<torch::Tensor> draws_state(const std::vector<const Executor*>& executors);

class ReplayDraws {
 public:
  // Sets each of `executors`' generators to its entry of `state` (a draws_state of the same executors).
  ReplayDraws(const std::vector<const Executor*>& executors, const std::vector<torch::Tensor>& state);
  ~ReplayDraws();  // puts back the states the generators had, in reverse order
  ReplayDraws(const ReplayDraws&) = delete;
  ReplayDraws& operator=(const ReplayDraws&) = delete;

 private:
  std::vector<at::Generator> generators_;
  std::vector<torch::Tensor> resume_;
};

}  // namespace partita::detail

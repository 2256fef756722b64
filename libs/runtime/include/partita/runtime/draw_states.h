#pragma once
// The states of the random generators a run's workers draw from (dropout masks, noise; see
// EngineOptions::random_seed), each named by the worker that draws from it: "stage0_device1" (the worker of
// stage 0 on the stage group's device 1) and, for a device of a tensor-parallel group, "stage0_device1_group"
// (the generator of its replicated nodes). The names do not depend on how a plan's devices are spread over
// processes: a checkpoint written by a job of two processes resumes in one, and one process's in two, each
// process restoring the generators of the workers it runs (Engine::restore_draw_states).
//
// Checkpoints of format version 2 and older kept one process's states by position ("0", "1", ... in worker
// order); read back, they keep those keys, and a restore takes them in worker order as before.
#include <map>
#include <string>

#include <torch/types.h>

namespace partita {

using DrawStates = std::map<std::string, torch::Tensor>;

// The name of the generator of the worker of `stage` on its group's device `device` (`group`: the replicated
// nodes' generator of a tensor-parallel device).
inline std::string draw_state_name(int stage, int device, bool group) {
  return "stage" + std::to_string(stage) + "_device" + std::to_string(device) + (group ? "_group" : "");
}

// True for the positional keys of a version-2 checkpoint ("0", "1", ...).
inline bool positional_draw_states(const DrawStates& states) { return states.count("0") != 0; }

}  // namespace partita

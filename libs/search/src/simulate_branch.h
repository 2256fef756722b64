#pragma once
// Internal to the search library: simulation of branch plans (stages with explicit node lists), which
// simulate() dispatches to. Model (in addition to simulator.h's):
//   - one forward task per node and microbatch on its stage's device (and one backward task when training);
//     a device runs all forwards microbatch by microbatch in its list order, then the backwards microbatch by
//     microbatch in reverse list order;
//   - a value produced on one device and read on another crosses their link once per microbatch (a lane per
//     ordered device pair, in the order the producer runs); its gradient crosses back in training;
//   - graph inputs are present on every device (the loader hands each device the batch);
//   - weights as the engine places them: a CPU device counts those its nodes read first (the host's tensors,
//     each once), a device with memory of its own every weight its nodes read, with gradients, and the
//     optimizer state of those no other device reads;
//   - memory: those weights (+ gradients and optimizer state) + the largest node's workspace + saved
//     activations (outputs of its non-structural nodes and the values it receives) for every sample of the
//     step in training (all forwards run before the backwards), for one microbatch in inference;
//   - host memory as simulator.h says.
#include "partita/search/simulator.h"

namespace partita::detail {

Simulation simulate_branch(const Plan& plan, const Graph& graph, const Cluster& cluster,
                           const CostTable& table, const SearchOptions& options);

}  // namespace partita::detail

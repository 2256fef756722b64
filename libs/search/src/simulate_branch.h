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
//   - memory: those weights (+ gradients and optimizer state) + in training on a device with memory of its
//     own the largest node's workspace + saved activations (outputs of its non-structural nodes and the
//     values it receives) for every sample of the step (all forwards run before the backwards); in training
//     on a CPU device the most it holds at once over the simulated timeline, and for its machine the most
//     all its CPU devices hold at once (simulate_branch.cpp, training_intervals: what the engine keeps across
//     its segments, gradients handed back, the loss, gradients not made yet); in inference on a device with
//     memory of its own what is alive at once along its node list for one microbatch, on a CPU device and
//     its machine what they hold at once over the timeline (inference_intervals);
//   - host memory as simulator.h says.
#include "partita/search/simulator.h"

namespace partita::detail {

Simulation simulate_branch(const Plan& plan, const Graph& graph, const Cluster& cluster,
                           const CostTable& table, const SearchOptions& options);

}  // namespace partita::detail

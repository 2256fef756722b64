#pragma once
// Handing trained parameters between the processes of a pipeline (rebalancing across processes): when the
// cuts move, a layer's weights and their optimizer state must reach the process whose stage now runs it.
//
// Every process loads the whole model, but only the process whose stage reads a parameter trains it (a tied
// weight read by several stages is kept equal on all of them by the reducer). hand_over_parameters gives
// every process every trained parameter's current value and optimizer state with one sum over the ranks:
// the owner contributes the tensors, every other rank zeros, so the sum is the owner's tensors exactly.
// Afterwards each process keeps gradients and optimizer state only for the parameters its new stage reads
// (the optimizer steps a parameter only when it has a gradient).
#include <vector>

#include <torch/optim.h>

namespace partita {

class DistributedGroup;

// `params`: the model's trainable parameters, the same list in every process. `owner[k]`: the rank that
// holds parameter k's current value and optimizer state (its stage read it: for a tied weight, any one of
// those ranks), or -1 when no stage trains it (it is left alone). `keep[k]`: whether this process's new
// stage reads parameter k. `optimizer`: SGD (with or without momentum), Adam or AdamW over exactly `params`;
// state an owner never made (a parameter not stepped yet) is not made elsewhere. Collective: every rank calls
// it with the same `params` shapes, `owner` and `step`. Throws partita::Error on bad arguments, another
// optimizer, or a failed collective (naming the rank at fault).
void hand_over_parameters(DistributedGroup& group, const std::vector<torch::Tensor>& params,
                          torch::optim::Optimizer& optimizer, const std::vector<int>& owner,
                          const std::vector<bool>& keep, int step);

}  // namespace partita

// Folding the branches of a scripted forward() that a run decides the same way every time.
#pragma once

#include <memory>
#include <vector>

#include <torch/script.h>

#include "partita/torch_bridge/module_mode.h"

namespace partita {

// A condition of a scripted forward() that depends on no tensor's values or sizes, only on
//  - tensors' ranks, dtypes, devices, layouts and whether they require gradients (`x.dim() == 3`,
//    `x.is_cuda`, `p.requires_grad`),
//  - the run's own state: grad mode (on in training, off in inference, as partita runs them) and autocast
//    (never on in partita),
//  - constants,
// combined through numbers, strings, bools and lists built from those. torch.nn's checks are of this kind
// (multi-head attention's `query.dim() == 3`, the encoder layer's fast-path tests, which read devices, grad
// mode and autocast). Unlike shape analysis, which loses ranks through lists and `cat`, the value of each is
// learnt by running the graph once on `stack` (the graph's inputs: the module and the example tensors),
// with a probe recording each condition, under the grad mode `mode` implies.
//
// Assumptions: a rank depends only on the inputs' ranks (true of torch.nn; a model that squeezes a dimension
// because its size is 1 would fold to what the example's sizes gave), and a condition on the device holds as
// it did on the CPU (torch.nn's fast-path tests accept the CPU and CUDA alike).
//
// Folds each condition that took one value every time it was evaluated, and propagates constants so that the
// branch taken replaces it; leaves one that was never evaluated or took both values. A loop's count of this
// kind (`[s for _ in range(x.dim() - 2)]` in F.interpolate) is folded the same way and the loop unrolled, as
// a trace records it. Rounds repeat while one folds (a fold can make another condition fixed). Throws what
// the graph throws on `stack` (the model refusing the input), leaving the graph as the last finished round
// left it.
struct RunConditionFolds {
  int folded = 0;       // conditions replaced by a constant
  int loop_counts = 0;  // loop counts replaced by a constant (and the loops unrolled)
  int runs = 0;         // runs of the graph it took (0 when nothing was fixed)
};
RunConditionFolds fold_run_conditions(const std::shared_ptr<torch::jit::Graph>& graph,
                                      const std::vector<c10::IValue>& stack, ModuleMode mode);

}  // namespace partita

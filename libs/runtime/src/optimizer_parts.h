#pragma once
// One optimizer's step split among threads (the engine's CPU workers; cost/update.h split_update says which
// parameter goes where). Every part is an optimizer of the whole one's kind over some of its parameters, with
// its groups' current options. Before a step each part borrows its parameters' state from the whole
// optimizer, and gives it back after, so the whole one stays the owner: checkpoints, device moves and the
// caller's Engine::optimizer() see it as before.
//
// Why the math is unchanged: LibTorch's SGD, Adam and AdamW update each parameter on its own (its gradient,
// its state, its group's options; Adam's bias correction counts the parameter's own steps), so a parameter
// takes bit for bit the step the whole optimizer would give it, whatever part steps it.
#include <memory>
#include <vector>

#include <torch/optim.h>

namespace partita::detail {

class OptimizerParts {
 public:
  // Parts of `whole`: parameter i (counted through its groups in order) goes to part part_of[i]. Throws
  // partita::Error for an optimizer other than SGD, Adam and AdamW, an assignment of another length than the
  // parameters, or a part outside [0, parts).
  OptimizerParts(torch::optim::Optimizer& whole, const std::vector<int>& part_of, int parts);

  // Whether `whole` is of a kind this splits (SGD, Adam, AdamW).
  static bool can_split(const torch::optim::Optimizer& whole);
  // Whether `whole` still has the groups and parameter tensors the parts were made for.
  bool made_for(const torch::optim::Optimizer& whole) const;
  int size() const { return static_cast<int>(parts_.size()); }
  // Whether part k has any parameter to step.
  bool empty(int part) const { return parts_[static_cast<size_t>(part)].optimizer == nullptr; }

  // Hands every part its parameters' state and its groups' current options (a changed learning rate).
  void lend();
  // Steps part k: parts may step at once on different threads, between lend() and give_back().
  void step(int part);
  // Gives the state back to the whole optimizer, new state of a first step included. Call it after lend()
  // even when a step failed.
  void give_back();

 private:
  struct Part {
    std::unique_ptr<torch::optim::Optimizer> optimizer;  // null: no parameters
    std::vector<size_t> groups;                          // [part group] the whole optimizer's group
  };
  torch::optim::Optimizer& whole_;
  std::vector<const void*> tensors_;  // the whole optimizer's parameters' TensorImpls, in order
  std::vector<size_t> group_sizes_;
  std::vector<Part> parts_;
};

}  // namespace partita::detail

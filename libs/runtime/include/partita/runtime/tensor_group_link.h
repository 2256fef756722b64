#pragma once
// The devices of one tensor-parallel group when each runs in a process of its own (`partita launch`, one rank
// per device): the one collective the engine's tensor runner needs between them. The runner packs each
// collective's key with its part, so devices that reached different collectives fail with both named instead
// of mixing parts (engine_tensor.h).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

namespace partita {

class DistributedGroup;

class TensorGroupLink {
 public:
  virtual ~TensorGroupLink() = default;
  virtual int size() const = 0;   // devices in the group
  virtual int index() const = 0;  // this process's device in it
  // Before every step (engine step `step`, warm-up included), ahead of its first collective.
  virtual void begin_step(int /*step*/) {}
  // Every device hands in `part` (a CPU tensor, one shape and dtype on all) with `tag` (the collective's
  // key); returns every device's part in the group's order (this device's own: `part`) and sets `tags` to
  // every device's tag. `step` is for error messages. Throws partita::Error when a device fails or stalls.
  virtual std::vector<torch::Tensor> all_gather(uint64_t tag, const torch::Tensor& part,
                                                std::vector<uint64_t>& tags, int step) = 0;
};

// Over the job's DistributedGroup: a subgroup of the group's ranks (DistributedGroup::add_subgroup), whose
// all-gathers go through shared memory when the ranks share a host, else through Gloo.
class DistributedTensorGroupLink final : public TensorGroupLink {
 public:
  // Collective over `ranks` (world ranks, ascending: the group's devices in order; this rank among them).
  DistributedTensorGroupLink(DistributedGroup& group, std::vector<int> ranks);
  int size() const override { return static_cast<int>(ranks_.size()); }
  int index() const override { return index_; }
  // The multi-process test hooks (PARTITA_FAULT_EXIT_AT_STEP / _HANG_AT_STEP, distributed_reducer.h) fire
  // here, at the step's start, so the other devices meet the fault inside a collective of the step.
  void begin_step(int step) override;
  std::vector<torch::Tensor> all_gather(uint64_t tag, const torch::Tensor& part, std::vector<uint64_t>& tags,
                                        int step) override;
  bool shares_memory() const;

 private:
  DistributedGroup& group_;
  std::vector<int> ranks_;
  int index_ = 0;
  int subgroup_ = 0;
  std::string what_;  // for errors
};

}  // namespace partita

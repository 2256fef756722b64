#include "partita/runtime/tensor_group_link.h"

#include <algorithm>
#include <string>

#include "partita/core/error.h"
#include "partita/runtime/distributed_group.h"
#include "partita/runtime/distributed_reducer.h"

namespace partita {

DistributedTensorGroupLink::DistributedTensorGroupLink(DistributedGroup& group, std::vector<int> ranks)
    : group_(group), ranks_(std::move(ranks)) {
  const auto me = std::find(ranks_.begin(), ranks_.end(), group.rank());
  PARTITA_CHECK(me != ranks_.end(), "rank ", group.rank(), " is not in its own tensor-parallel group");
  index_ = static_cast<int>(me - ranks_.begin());
  subgroup_ = group.add_subgroup(ranks_);
  what_ = "the tensor-parallel exchange of ranks";
  for (int r : ranks_) what_ += " " + std::to_string(r);
}

bool DistributedTensorGroupLink::shares_memory() const { return group_.subgroup_shares_memory(subgroup_); }

void DistributedTensorGroupLink::begin_step(int step) { apply_fault_hooks(group_.rank(), step); }

std::vector<torch::Tensor> DistributedTensorGroupLink::all_gather(uint64_t tag, const torch::Tensor& part,
                                                                  std::vector<uint64_t>& tags, int step) {
  return group_.all_gather_tagged(subgroup_, tag, part, tags, step, what_);
}

}  // namespace partita

#include "partita/runtime/distributed_reducer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <unistd.h>

#include <c10/util/strides.h>
#include <torch/torch.h>

#include "partita/core/error.h"

namespace partita {

std::vector<std::vector<size_t>> plan_buckets(const std::vector<torch::Tensor>& tensors,
                                              int64_t bucket_bytes) {
  std::vector<std::vector<size_t>> buckets;
  std::vector<int64_t> filled;                              // bytes per bucket
  std::vector<std::pair<c10::ScalarType, size_t>> current;  // the bucket each dtype is filling
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (!t.defined()) continue;
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    auto it = std::find_if(current.begin(), current.end(),
                           [&](const auto& c) { return c.first == t.scalar_type(); });
    if (it == current.end() || (filled[it->second] > 0 && filled[it->second] + bytes > bucket_bytes)) {
      buckets.emplace_back();
      filled.push_back(0);
      if (it == current.end()) {
        current.emplace_back(t.scalar_type(), buckets.size() - 1);
        it = current.end() - 1;
      } else {
        it->second = buckets.size() - 1;
      }
    }
    buckets[it->second].push_back(i);
    filled[it->second] += bytes;
  }
  return buckets;
}

void ReducerOptions::validate() const {
  PARTITA_CHECK(bucket_bytes > 0, "gradient bucket size must be positive, got ", bucket_bytes);
}

GlooGradientReducer::GlooGradientReducer(DistributedGroup& group, ReducerOptions options)
    : group_(group), options_(options) {
  options_.validate();
}

namespace {

// Whether `grad` already lives in `flat` at element `start` (contiguous, same storage): then it needs no copy.
bool is_slot(const torch::Tensor& grad, const torch::Tensor& flat, int64_t start) {
  return grad.scalar_type() == flat.scalar_type() && grad.is_contiguous() &&
         grad.storage().is_alias_of(flat.storage()) &&
         grad.storage_offset() == flat.storage_offset() + start;
}

}  // namespace

double GlooGradientReducer::reduce(const std::vector<torch::Tensor>& parameters, double local_loss,
                                   int step) {
  apply_fault_hooks(group_.rank(), step);
  group_.mark_step(step);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  grads.reserve(parameters.size());
  for (const auto& p : parameters) {
    PARTITA_CHECK(!p.grad().defined() || p.grad().device().is_cpu(),
                  "multi-process gradients must be on the host, ", "got one on ", p.grad().device().str());
    grads.push_back(p.grad());
  }
  // Every rank plans the same buckets: the gradients' presence, dtypes and sizes follow from the model.
  const auto layout = plan_buckets(grads, options_.bucket_bytes);
  bool same = layout.size() == buckets_.size();
  for (size_t b = 0; same && b < layout.size(); ++b) {
    same = layout[b] == buckets_[b].members;
    for (size_t k = 0; same && k < layout[b].size(); ++k)
      same = grads[layout[b][k]].numel() == buckets_[b].numels[k] &&
             grads[layout[b][k]].scalar_type() == buckets_[b].flat.scalar_type();
  }
  if (!same) {
    buckets_.clear();
    for (const auto& members : layout) {
      Bucket bucket;
      bucket.members = members;
      int64_t total = 0;
      for (size_t i : members) {
        bucket.numels.push_back(grads[i].numel());
        total += grads[i].numel();
      }
      bucket.flat = torch::empty({total}, torch::TensorOptions().dtype(grads[members[0]].scalar_type()));
      buckets_.push_back(std::move(bucket));
    }
    ++rebuilds_;
  }
  // Copy in the gradients that are not yet views of their slots; remember them to rebind after the sum.
  int64_t copied = 0;
  std::vector<std::pair<size_t, torch::Tensor>> rebind;
  std::vector<torch::Tensor> flat;
  flat.reserve(buckets_.size() + 1);
  for (auto& bucket : buckets_) {
    int64_t offset = 0;
    for (size_t k = 0; k < bucket.members.size(); ++k) {
      const size_t i = bucket.members[k];
      const int64_t start = offset;
      offset += bucket.numels[k];
      if (is_slot(grads[i], bucket.flat, start)) continue;
      // An alias of the bucket's storage made with set_, not a view op: autograd would mark a view, and
      // LibTorch's Optimizer::zero_grad (detach_) refuses views.
      const torch::Tensor view =
          torch::empty({0}, bucket.flat.options())
              .set_(bucket.flat.storage(), bucket.flat.storage_offset() + start,
                    grads[i].sizes(), c10::contiguous_strides(grads[i].sizes()));
      view.copy_(grads[i]);
      copied += grads[i].numel() * static_cast<int64_t>(grads[i].element_size());
      rebind.emplace_back(i, view);
    }
    flat.push_back(bucket.flat);
  }
  flat.push_back(torch::full({1}, local_loss, torch::kFloat64));
  group_.allreduce_sum(flat, step, "gradient all-reduce");
  // From now on the parameter's gradient lives in the bucket: autograd accumulates into it in place.
  for (auto& [i, view] : rebind) parameters[i].mutable_grad() = view;
  buckets_last_step_ = static_cast<int>(buckets_.size());
  bytes_copied_last_step_ = copied;
  return flat.back().item<double>();
}

namespace {
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}
}  // namespace

void apply_fault_hooks(int rank, int step) {
  static const int exit_at = env_int("PARTITA_FAULT_EXIT_AT_STEP", -1);
  static const int hang_at = env_int("PARTITA_FAULT_HANG_AT_STEP", -1);
  static const int fault_rank = env_int("PARTITA_FAULT_RANK", 1);
  if (rank != fault_rank) return;
  if (step == exit_at) {
    std::fprintf(stderr, "partita: test hook: rank %d exits at step %d (PARTITA_FAULT_EXIT_AT_STEP)\n", rank,
                 step);
    std::fflush(stderr);
    _exit(1);
  }
  if (step == hang_at) {
    std::fprintf(stderr, "partita: test hook: rank %d stalls at step %d (PARTITA_FAULT_HANG_AT_STEP)\n", rank,
                 step);
    std::fflush(stderr);
    while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace partita

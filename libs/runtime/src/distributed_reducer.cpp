#include "partita/runtime/distributed_reducer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <unistd.h>

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

double GlooGradientReducer::reduce(const std::vector<torch::Tensor>& parameters, double local_loss,
                                   int step) {
  apply_fault_hooks(group_.rank(), step);
  group_.mark_step(step);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters) {
    PARTITA_CHECK(!p.grad().defined() || p.grad().device().is_cpu(),
                  "multi-process gradients must be on the host, ", "got one on ", p.grad().device().str());
    grads.push_back(p.grad());
  }
  const auto buckets = plan_buckets(grads, options_.bucket_bytes);
  std::vector<torch::Tensor> flat;
  for (const auto& bucket : buckets) {
    std::vector<torch::Tensor> pieces;
    for (size_t i : bucket) pieces.push_back(grads[i].reshape(-1));
    flat.push_back(torch::cat(pieces));
  }
  flat.push_back(torch::full({1}, local_loss, torch::kFloat64));
  group_.allreduce_sum(flat, step, "gradient all-reduce");
  for (size_t b = 0; b < buckets.size(); ++b) {
    int64_t offset = 0;
    for (size_t i : buckets[b]) {
      const int64_t n = grads[i].numel();
      grads[i].copy_(flat[b].narrow(0, offset, n).view(grads[i].sizes()));
      offset += n;
    }
  }
  buckets_last_step_ = static_cast<int>(buckets.size());
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

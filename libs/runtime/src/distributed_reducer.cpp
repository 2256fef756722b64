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

namespace {

// Buckets over tensors[order[0]], tensors[order[1]], ...: per dtype, in order, until a bucket would pass its
// limit (`first_bucket_bytes` for the dtype's first bucket, `bucket_bytes` after it).
std::vector<std::vector<size_t>> plan_in_order(const std::vector<torch::Tensor>& tensors,
                                               const std::vector<size_t>& order, int64_t first_bucket_bytes,
                                               int64_t bucket_bytes) {
  std::vector<std::vector<size_t>> buckets;
  std::vector<int64_t> filled;  // bytes per bucket
  struct Filling {
    c10::ScalarType dtype;
    size_t bucket;  // the bucket this dtype is filling
    bool first;     // whether it is the dtype's first bucket
  };
  std::vector<Filling> current;
  for (size_t i : order) {
    const auto& t = tensors[i];
    if (!t.defined()) continue;
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    auto it = std::find_if(current.begin(), current.end(),
                           [&](const Filling& c) { return c.dtype == t.scalar_type(); });
    bool full = it == current.end();
    if (!full) {
      const int64_t limit = it->first ? std::min(first_bucket_bytes, bucket_bytes) : bucket_bytes;
      full = filled[it->bucket] > 0 && filled[it->bucket] + bytes > limit;
    }
    if (full) {
      buckets.emplace_back();
      filled.push_back(0);
      if (it == current.end()) {
        current.push_back({t.scalar_type(), buckets.size() - 1, true});
        it = current.end() - 1;
      } else {
        it->bucket = buckets.size() - 1;
        it->first = false;
      }
    }
    buckets[it->bucket].push_back(i);
    filled[it->bucket] += bytes;
  }
  return buckets;
}

// Whether `grad` already lives in `flat` at element `start` (contiguous, same storage): then it needs no
// copy.
bool is_slot(const torch::Tensor& grad, const torch::Tensor& flat, int64_t start) {
  return grad.defined() && grad.scalar_type() == flat.scalar_type() && grad.is_contiguous() &&
         grad.storage().is_alias_of(flat.storage()) && grad.storage_offset() == flat.storage_offset() + start;
}

constexpr size_t kNoBucket = static_cast<size_t>(-1);

}  // namespace

std::vector<std::vector<size_t>> plan_buckets(const std::vector<torch::Tensor>& tensors,
                                              int64_t bucket_bytes) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  return plan_in_order(tensors, order, bucket_bytes, bucket_bytes);
}

std::vector<std::vector<size_t>> plan_buckets_reversed(const std::vector<torch::Tensor>& tensors,
                                                       int64_t first_bucket_bytes, int64_t bucket_bytes) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = order.size() - 1 - i;
  return plan_in_order(tensors, order, first_bucket_bytes, bucket_bytes);
}

void ReducerOptions::validate() const {
  PARTITA_CHECK(bucket_bytes > 0, "gradient bucket size must be positive, got ", bucket_bytes);
  PARTITA_CHECK(first_bucket_bytes > 0, "first gradient bucket size must be positive, got ",
                first_bucket_bytes);
}

DistributedGradientReducer::DistributedGradientReducer(DistributedGroup& group, ReducerOptions options)
    : group_(group), options_(options) {
  options_.validate();
}

DistributedGradientReducer::~DistributedGradientReducer() { stop_thread(); }

bool DistributedGradientReducer::holds(const torch::Tensor& grad) const {
  return grad.defined() && std::any_of(buckets_.begin(), buckets_.end(), [&](const Bucket& b) {
           return grad.storage().is_alias_of(b.flat.storage());
         });
}

void DistributedGradientReducer::mark(int step) {
  if (marked_step_ == step) return;
  apply_fault_hooks(group_.rank(), step);
  group_.mark_step(step);
  marked_step_ = step;
}

void DistributedGradientReducer::copy_into_slot(const std::vector<torch::Tensor>& parameters, size_t b,
                                                size_t k) {
  const Bucket& bucket = buckets_[b];
  const size_t i = bucket.members[k];
  const torch::Tensor& grad = parameters[i].grad();
  PARTITA_ASSERT(grad.defined(), "a bucket member has no gradient");
  if (is_slot(grad, bucket.flat, bucket.starts[k])) return;
  // An alias of the bucket's storage made with set_, not a view op: autograd would mark a view, and
  // zeroing a gradient at the start of a step (detach_, as LibTorch 1.13's zero_grad) refuses views.
  const torch::Tensor slot = torch::empty({0}, bucket.flat.options())
                                 .set_(bucket.flat.storage(), bucket.flat.storage_offset() + bucket.starts[k],
                                       grad.sizes(), c10::contiguous_strides(grad.sizes()));
  slot.copy_(grad);
  copied_ += grad.numel() * static_cast<int64_t>(grad.element_size());
  rebind_.emplace_back(i, slot);
}

double DistributedGradientReducer::reduce(const std::vector<torch::Tensor>& parameters, double local_loss,
                                          int step) {
  PARTITA_ASSERT(!armed_, "reduce() during an overlapped step");
  mark(step);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  grads.reserve(parameters.size());
  for (const auto& p : parameters) {
    PARTITA_CHECK(!p.grad().defined() || p.grad().device().is_cpu(),
                  "multi-process gradients must be on the host, ", "got one on ", p.grad().device().str());
    grads.push_back(p.grad());
  }
  // Every rank plans the same buckets: the gradients' presence, dtypes and sizes follow from the model.
  const auto layout = plan_buckets_reversed(grads, options_.first_bucket_bytes, options_.bucket_bytes);
  bool same = layout.size() == buckets_.size();
  for (size_t b = 0; same && b < layout.size(); ++b) {
    same = layout[b] == buckets_[b].members;
    for (size_t k = 0; same && k < layout[b].size(); ++k)
      same = grads[layout[b][k]].numel() == buckets_[b].numels[k] &&
             grads[layout[b][k]].scalar_type() == buckets_[b].flat.scalar_type();
  }
  if (!same) {
    buckets_.clear();
    slot_of_.assign(parameters.size(), {kNoBucket, 0});
    for (const auto& members : layout) {
      Bucket bucket;
      bucket.members = members;
      int64_t total = 0;
      for (size_t k = 0; k < members.size(); ++k) {
        slot_of_[members[k]] = {buckets_.size(), k};
        bucket.numels.push_back(grads[members[k]].numel());
        bucket.starts.push_back(total);
        total += grads[members[k]].numel();
      }
      bucket.flat = torch::empty({total}, torch::TensorOptions().dtype(grads[members[0]].scalar_type()));
      buckets_.push_back(std::move(bucket));
    }
    ++rebuilds_;
  }
  // Copy in the gradients that are not yet views of their slots; they are rebound after the sum.
  copied_ = 0;
  rebind_.clear();
  std::vector<torch::Tensor> flat;
  flat.reserve(buckets_.size() + 1);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (size_t k = 0; k < buckets_[b].members.size(); ++k) copy_into_slot(parameters, b, k);
    flat.push_back(buckets_[b].flat);
  }
  flat.push_back(torch::full({1}, local_loss, torch::kFloat64));
  group_.allreduce_sum(flat, step, "gradient all-reduce");
  // From now on the parameter's gradient lives in the bucket: autograd accumulates into it in place.
  for (auto& [i, slot] : rebind_) parameters[i].mutable_grad() = slot;
  rebind_.clear();
  buckets_last_step_ = static_cast<int>(buckets_.size());
  overlapped_last_step_ = 0;
  bytes_copied_last_step_ = copied_;
  return flat.back().item<double>();
}

bool DistributedGradientReducer::can_overlap(const std::vector<torch::Tensor>& parameters) const {
  return options_.overlap &&
         plan_buckets_reversed(parameters, options_.first_bucket_bytes, options_.bucket_bytes).size() >= 2;
}

bool DistributedGradientReducer::begin_backward(const std::vector<torch::Tensor>& parameters, int step) {
  PARTITA_ASSERT(!armed_, "begin_backward() twice");
  mark(step);
  // One bucket could only start at the end of backward; and the buckets must be what every rank uses (the
  // last reduction's, with exactly the gradients that are defined now).
  if (!options_.overlap || buckets_.size() < 2 || slot_of_.size() != parameters.size()) return false;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const torch::Tensor& grad = parameters[i].grad();
    const auto [b, k] = slot_of_[i];
    if (grad.defined() != (b != kNoBucket)) return false;
    if (b != kNoBucket && (grad.numel() != buckets_[b].numels[k] || !grad.device().is_cpu() ||
                           grad.scalar_type() != buckets_[b].flat.scalar_type()))
      return false;
  }
  parameters_ = parameters;
  ready_.assign(parameters.size(), 0);
  remaining_.resize(buckets_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) remaining_[b] = buckets_[b].members.size();
  next_launch_ = 0;
  launched_in_backward_ = 0;
  copied_ = 0;
  rebind_.clear();
  step_ = step;
  if (!thread_.joinable()) thread_ = std::thread([this] { communicate(); });
  armed_ = true;
  return true;
}

void DistributedGradientReducer::on_gradient_ready(size_t index) {
  if (!armed_ || index >= ready_.size() || ready_[index]) return;
  ready_[index] = 1;
  const auto [b, k] = slot_of_[index];
  if (b == kNoBucket) return;  // a gradient outside the buckets: finish() sums it
  torch::NoGradGuard no_grad;
  copy_into_slot(parameters_, b, k);
  if (--remaining_[b] > 0) return;
  // Buckets start in order on every rank: one whose gradients are final waits for those before it.
  while (next_launch_ < buckets_.size() && remaining_[next_launch_] == 0) {
    launch(next_launch_++);
    ++launched_in_backward_;
  }
}

void DistributedGradientReducer::launch(size_t b) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(buckets_[b].flat);
    ++in_flight_;
  }
  cv_.notify_all();
}

void DistributedGradientReducer::communicate() {
  while (true) {
    torch::Tensor t;
    bool skip = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      t = std::move(queue_.front());
      queue_.pop_front();
      skip = error_ != nullptr;  // after a failure the rest of the step is abandoned
    }
    std::exception_ptr error;
    if (!skip) {
      try {
        std::vector<torch::Tensor> one{t};
        group_.allreduce_sum(one, step_, "gradient all-reduce");
      } catch (...) {
        error = std::current_exception();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error && !error_) error_ = error;
      --in_flight_;
    }
    cv_.notify_all();
  }
}

void DistributedGradientReducer::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return in_flight_ == 0; });
  if (error_) {
    std::exception_ptr error = error_;
    error_ = nullptr;
    lock.unlock();
    std::rethrow_exception(error);
  }
}

double DistributedGradientReducer::finish(const std::vector<torch::Tensor>& parameters, double local_loss,
                                          int step) {
  PARTITA_ASSERT(armed_ && step == step_, "finish() without begin_backward() of step ", step);
  armed_ = false;
  try {
    torch::NoGradGuard no_grad;
    // The buckets left, in order; members that got no gradient this step keep theirs (zeros after zero_grad).
    for (size_t b = next_launch_; b < buckets_.size(); ++b) {
      for (size_t k = 0; k < buckets_[b].members.size(); ++k) {
        if (!ready_[buckets_[b].members[k]]) copy_into_slot(parameters, b, k);
      }
      launch(b);
    }
    next_launch_ = buckets_.size();
    // Gradients that appeared outside the buckets (every rank has the same): summed on their own, in order;
    // the next step finds them defined and rebuilds the buckets.
    std::vector<std::pair<torch::Tensor, torch::Tensor>> outside;  // (gradient, contiguous copy summed)
    for (size_t i = 0; i < parameters.size(); ++i) {
      const torch::Tensor& grad = parameters[i].grad();
      if (slot_of_[i].first != kNoBucket || !grad.defined()) continue;
      PARTITA_CHECK(grad.device().is_cpu(), "multi-process gradients must be on the host, got one on ",
                    grad.device().str());
      outside.emplace_back(grad, grad.contiguous());
    }
    std::vector<torch::Tensor> extra;
    for (auto& [grad, summed] : outside) extra.push_back(summed);
    const torch::Tensor loss = torch::full({1}, local_loss, torch::kFloat64);
    extra.push_back(loss);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& t : extra) {
        queue_.push_back(t);
        ++in_flight_;
      }
    }
    cv_.notify_all();
    drain();
    for (auto& [grad, summed] : outside) {
      if (!summed.is_same(grad)) grad.copy_(summed);
    }
    for (auto& [i, slot] : rebind_) parameters[i].mutable_grad() = slot;
    rebind_.clear();
    parameters_.clear();
    buckets_last_step_ = static_cast<int>(buckets_.size());
    overlapped_last_step_ = launched_in_backward_;
    bytes_copied_last_step_ = copied_;
    return loss.item<double>();
  } catch (...) {
    abandon();
    throw;
  }
}

void DistributedGradientReducer::abandon() noexcept {
  armed_ = false;
  try {
    drain();
  } catch (...) {  // the step failed already; its error is the one reported
  }
  rebind_.clear();
  parameters_.clear();
}

void DistributedGradientReducer::stop_thread() noexcept {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
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

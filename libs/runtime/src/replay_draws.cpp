#include "replay_draws.h"

#include <mutex>

#include <ATen/CPUGeneratorImpl.h>

#include "partita/core/error.h"

namespace partita::detail {

at::Generator worker_generator(torch::Device device, uint64_t seed, int stage, int place, int first_step) {
  if (!device.is_cpu()) return at::globalContext().defaultGenerator(device);
  const auto where = static_cast<uint64_t>(stage) * 8192 + static_cast<uint64_t>(place) + 1;
  const auto start = static_cast<uint64_t>(first_step);
  return at::make_generator<at::CPUGeneratorImpl>(seed + 0x9E3779B97F4A7C15ULL * where +
                                                  0xD1B54A32D192ED03ULL * start);
}

std::vector<torch::Tensor> draws_state(const std::vector<const Executor*>& executors) {
  std::vector<torch::Tensor> state;
  for (const Executor* e : executors) {
    at::Generator g = e->generator();
    if (!g.defined()) {
      state.emplace_back();
      continue;
    }
    const std::lock_guard<std::mutex> lock(g.mutex());
    state.push_back(g.get_state());
  }
  return state;
}

ReplayDraws::ReplayDraws(const std::vector<const Executor*>& executors,
                         const std::vector<torch::Tensor>& state) {
  PARTITA_ASSERT(state.empty() || state.size() == executors.size(), state.size(), " states for ",
                 executors.size(), " executors");
  for (size_t i = 0; i < state.size(); ++i) {
    at::Generator g = executors[i]->generator();
    if (!state[i].defined() || !g.defined()) continue;
    const std::lock_guard<std::mutex> lock(g.mutex());
    resume_.push_back(g.get_state());
    g.set_state(state[i]);
    generators_.push_back(std::move(g));
  }
}

ReplayDraws::~ReplayDraws() {
  for (size_t i = generators_.size(); i-- > 0;) {
    const std::lock_guard<std::mutex> lock(generators_[i].mutex());
    generators_[i].set_state(resume_[i]);
  }
}

}  // namespace partita::detail

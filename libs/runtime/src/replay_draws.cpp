#include "replay_draws.h"

#include <mutex>

#include <ATen/CPUGeneratorImpl.h>

namespace partita::detail {

at::Generator worker_generator(torch::Device device, uint64_t seed, int stage, int replica, int first_step) {
  if (!device.is_cpu()) return at::globalContext().defaultGenerator(device);
  const auto place = static_cast<uint64_t>(stage) * 4096 + static_cast<uint64_t>(replica) + 1;
  const auto start = static_cast<uint64_t>(first_step);
  return at::make_generator<at::CPUGeneratorImpl>(seed + 0x9E3779B97F4A7C15ULL * place +
                                                  0xD1B54A32D192ED03ULL * start);
}

torch::Tensor draws_state(const Executor& executor) {
  at::Generator g = executor.generator();
  if (!g.defined()) return {};
  const std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

ReplayDraws::ReplayDraws(const Executor& executor, const torch::Tensor& state) {
  if (!state.defined() || !executor.generator().defined()) return;
  generator_ = executor.generator();
  const std::lock_guard<std::mutex> lock(generator_.mutex());
  resume_ = generator_.get_state();
  generator_.set_state(state);
}

ReplayDraws::~ReplayDraws() {
  if (!generator_.defined()) return;
  const std::lock_guard<std::mutex> lock(generator_.mutex());
  generator_.set_state(resume_);
}

}  // namespace partita::detail

#include "partita/search/data_parallel_strategy.h"

#include <algorithm>
#include <numeric>
#include <queue>

#include "partita/cost/comm.h"
#include "partita/search/chain_plan.h"
#include "partita/search/collective_time.h"

namespace partita {

std::optional<std::vector<int>> proportional_shares(int samples, const std::vector<double>& per_sample,
                                                    const std::vector<int>& caps) {
  const size_t n = per_sample.size();
  int64_t room = 0;
  for (int c : caps) room += c;
  if (room < samples) return std::nullopt;
  std::vector<int> shares(n, 0);
  // Start just below the proportional split, then hand out the rest one by one to the earliest finisher.
  double speed = 0;
  for (double t : per_sample) speed += 1.0 / t;
  int given = 0;
  for (size_t i = 0; i < n; ++i) {
    shares[i] = std::min(caps[i], std::max(0, static_cast<int>(samples / (per_sample[i] * speed)) - 1));
    given += shares[i];
  }
  using Entry = std::pair<double, size_t>;  // finish time with one more sample, device
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;
  for (size_t i = 0; i < n; ++i) {
    if (shares[i] < caps[i]) heap.push({(shares[i] + 1) * per_sample[i], i});
  }
  for (; given < samples; ++given) {
    const size_t i = heap.top().second;
    heap.pop();
    ++shares[i];
    if (shares[i] < caps[i]) heap.push({(shares[i] + 1) * per_sample[i], i});
  }
  return shares;
}

namespace {

struct DpConfig {
  Seconds estimate;
  Plan plan;
};

// The best microbatch count and saving options for one device set; nullopt when nothing fits.
std::optional<DpConfig> plan_for_devices(const StageModel& model, const std::vector<int>& devs,
                                         bool equal_shares, StrategyKind kind) {
  const NodeId last = model.num_nodes() - 1;
  std::vector<std::string> ids;
  for (int d : devs) ids.push_back(model.cluster().devices[static_cast<size_t>(d)].id);
  const LinkSpec ring = slowest_link(model.cluster(), ids);
  const Seconds allreduce = model.training() ? fast_allreduce_time(model.trainable_bytes(0, last),
                                                                   static_cast<int>(devs.size()), ring)
                                             : Seconds(0);
  std::optional<DpConfig> best;
  for (int m : microbatch_candidates(model.options(), static_cast<int>(devs.size()))) {
    const int mb = model.options().global_batch / m;
    for (const Savings& sv : model.savings_choices(devs)) {
      const Checkpointing c = sv.checkpointing;
      const Offload o = sv.offload;
      std::vector<double> per_sample;  // at a whole microbatch (fixed per-call costs shared by its samples)
      std::vector<int> caps;
      for (int d : devs) {
        const int spec = model.spec_of(d);
        per_sample.push_back(model.microbatch_time(spec, StageLoad{0, last, mb, 1, c, o}).value() / mb);
        // Largest share that fits: memory grows with samples, so bisect.
        int lo = 0, hi = mb;
        while (lo < hi) {
          const int mid = (lo + hi + 1) / 2;
          const WeightHome home = model.weight_home(d, static_cast<int>(devs.size()));
          if (model.memory(StageLoad{0, last, mid, 1, c, o, home, d, m}) <= model.memory_cap(d))
            lo = mid;
          else
            hi = mid - 1;
        }
        caps.push_back(lo);
      }
      std::optional<std::vector<int>> shares;
      if (equal_shares) {
        shares = even_shares(mb, static_cast<int>(devs.size()));
        for (size_t i = 0; i < devs.size(); ++i) {
          if ((*shares)[i] > caps[i]) shares.reset();
          if (!shares) break;
        }
      } else {
        shares = proportional_shares(mb, per_sample, caps);
      }
      if (!shares) continue;
      double slowest = 0;  // each device's microbatch share, its fixed per-call costs paid in full
      for (size_t i = 0; i < devs.size(); ++i) {
        if ((*shares)[i] == 0) continue;
        const StageLoad load{0, last, (*shares)[i], 1, c, o};
        slowest = std::max(slowest, model.microbatch_time(model.spec_of(devs[i]), load).value());
      }
      const Seconds offload = model.offload_time(StageLoad{0, last, 1, 1, c, o});
      const Seconds estimate = Seconds(slowest * m) + allreduce + offload;
      if (best && best->estimate <= estimate) continue;
      Plan plan = empty_plan(model, kind);
      plan.microbatches = m;
      plan.schedule = Schedule::kOneFOneB;
      DeviceGroup g;
      g.devices = ids;
      g.batch_shares = *shares;
      // A device with no sample contributes nothing but all-reduce cost: drop it.
      for (size_t i = g.devices.size(); i-- > 0;) {
        if (g.batch_shares[i] == 0) {
          plan.unused_devices.push_back(UnusedDevice{g.devices[i], "too slow to earn a sample of the batch"});
          g.devices.erase(g.devices.begin() + static_cast<std::ptrdiff_t>(i));
          g.batch_shares.erase(g.batch_shares.begin() + static_cast<std::ptrdiff_t>(i));
        }
      }
      plan.groups.push_back(std::move(g));
      plan.stages.push_back(Stage{0, last, 0, c, o});
      best = DpConfig{estimate, std::move(plan)};
    }
    if (best) break;  // more microbatches only add per-step overhead once the batch fits
  }
  return best;
}

}  // namespace

std::vector<Plan> data_parallel_candidates(const StageModel& model) {
  const int k = model.num_devices();
  std::vector<int> order(static_cast<size_t>(k));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return model.sample_time(model.spec_of(a)) < model.sample_time(model.spec_of(b));
  });
  std::vector<int> sizes;
  for (int d = 1; d <= k; ++d) {
    const bool kind_change = d == k || model.spec_of(order[static_cast<size_t>(d)]) !=
                                           model.spec_of(order[static_cast<size_t>(d) - 1]);
    if (k <= 8 || kind_change) sizes.push_back(d);
    if (!model.options().batch_splittable) break;  // one device: the model must see its whole batch
  }
  std::vector<DpConfig> configs;
  for (int d : sizes) {
    std::vector<int> devs(order.begin(), order.begin() + d);
    std::sort(devs.begin(), devs.end());  // cluster order keeps ring neighbours on one node
    if (auto c = plan_for_devices(model, devs, false, StrategyKind::kData)) configs.push_back(std::move(*c));
  }
  std::stable_sort(configs.begin(), configs.end(),
                   [](const DpConfig& a, const DpConfig& b) { return a.estimate < b.estimate; });
  std::vector<Plan> out;
  for (auto& c : configs) {
    mark_unused_devices(c.plan, model.cluster(),
                        model.options().batch_splittable
                            ? "slower devices added more all-reduce time than compute they saved"
                            : "the model does not split along the batch: one device runs it");
    out.push_back(std::move(c.plan));
  }
  return out;
}

std::optional<Plan> even_data_parallel_plan(const StageModel& model) {
  std::vector<int> devs(static_cast<size_t>(model.num_devices()));
  std::iota(devs.begin(), devs.end(), 0);
  auto c = plan_for_devices(model, devs, true, StrategyKind::kEven);
  if (!c) return std::nullopt;
  return std::move(c->plan);
}

}  // namespace partita

#include "partita/search/hybrid_strategy.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <optional>

#include "parallel_for.h"
#include "partita/cost/comm.h"
#include "partita/search/chain_plan.h"

namespace partita {

namespace {

struct Kind {
  int spec = 0;
  std::vector<int> devices;  // cluster order
  double capacity = 0;       // devices / sample time
  int unit = 1;  // devices per tensor-parallel group of this layout family (1: data parallel only)

  int units() const { return static_cast<int>(devices.size()) / unit; }
};

std::vector<Kind> device_kinds(const StageModel& model) {
  std::map<int, Kind> by_spec;
  for (int d = 0; d < model.num_devices(); ++d) {
    Kind& k = by_spec[model.spec_of(d)];
    k.spec = model.spec_of(d);
    k.devices.push_back(d);
  }
  std::vector<Kind> kinds;
  for (auto& [spec, k] : by_spec) {
    k.capacity = static_cast<double>(k.devices.size()) / model.sample_time(spec).value();
    kinds.push_back(std::move(k));
  }
  return kinds;
}

// Whether every `unit` consecutive devices of `k` share a node (a tensor-parallel group all-reduces after
// every split matmul pair: it stays inside a machine).
bool units_on_one_node(const StageModel& model, const Kind& k, int unit) {
  if (k.devices.size() % static_cast<size_t>(unit) != 0) return false;
  const auto& devs = model.cluster().devices;
  for (size_t i = 0; i < k.devices.size(); ++i) {
    if (devs[static_cast<size_t>(k.devices[i])].node !=
        devs[static_cast<size_t>(k.devices[i - i % static_cast<size_t>(unit)])].node)
      return false;
  }
  return true;
}

// Group sizes per kind in units of the kind's tensor-parallel group (ordered), concatenated over kinds in
// `order` -> slots.
std::vector<ChainSlot> make_slots(const StageModel& model, const std::vector<Kind>& kinds,
                                  const std::vector<int>& order, const std::vector<std::vector<int>>& sizes) {
  std::vector<ChainSlot> slots;
  const auto& devs = model.cluster().devices;
  for (int ki : order) {
    const Kind& k = kinds[static_cast<size_t>(ki)];
    size_t at = 0;
    for (int s : sizes[static_cast<size_t>(ki)]) {
      ChainSlot slot;
      std::vector<std::string> ids;
      for (int i = 0; i < s * k.unit; ++i, ++at) {
        slot.devices.push_back(k.devices[at]);
        ids.push_back(devs[static_cast<size_t>(k.devices[at])].id);
      }
      slot.group_link = slowest_link(model.cluster(), ids);
      slot.tensor_size = k.unit;
      if (k.unit > 1) slot.tensor_link = slowest_link(model.cluster(), {ids.begin(), ids.begin() + k.unit});
      slots.push_back(std::move(slot));
    }
  }
  for (size_t j = 0; j < slots.size(); ++j) {
    slots[j].next_link = j + 1 < slots.size() ? model.cluster().link_between(
                                                    devs[static_cast<size_t>(slots[j].devices[0])].id,
                                                    devs[static_cast<size_t>(slots[j + 1].devices[0])].id)
                                              : slots[j].group_link;
  }
  return slots;
}

std::vector<std::vector<int>> compositions(int n) {
  std::vector<std::vector<int>> out;
  for (unsigned mask = 0; mask < (1u << (n - 1)); ++mask) {
    std::vector<int> parts{1};
    for (int i = 0; i + 1 < n; ++i) {
      if (mask & (1u << i))
        parts.push_back(1);
      else
        ++parts.back();
    }
    out.push_back(std::move(parts));
  }
  return out;
}

std::vector<int> near_even(int n, int parts) {
  std::vector<int> sizes(static_cast<size_t>(parts), n / parts);
  for (int i = 0; i < n % parts; ++i) ++sizes[static_cast<size_t>(i)];
  return sizes;
}

// Appends the layouts of one family (each kind's devices cut into groups of whole `unit`s; see the header).
void add_layouts(const StageModel& model, const std::vector<Kind>& kinds, int max_stages,
                 std::vector<std::vector<ChainSlot>>& layouts) {
  const int nk = static_cast<int>(kinds.size());
  const bool exhaustive = nk <= 3 && std::all_of(kinds.begin(), kinds.end(), [](const Kind& k) {
                            return static_cast<int>(k.devices.size()) <= kExhaustiveHybridDevices;
                          });
  for (unsigned mask = 1; mask < (1u << nk); ++mask) {
    std::vector<int> present;
    for (int i = 0; i < nk; ++i) {
      if (mask & (1u << i)) present.push_back(i);
    }
    if (!exhaustive && present.size() != kinds.size()) continue;  // large clusters: every kind takes part
    std::vector<std::vector<std::vector<int>>> choices(static_cast<size_t>(nk));  // per kind: size lists
    if (exhaustive) {
      for (int ki : present) choices[static_cast<size_t>(ki)] = compositions(kinds[ki].units());
    }
    std::vector<std::vector<std::vector<int>>> size_sets;  // per layout: sizes per kind
    if (exhaustive) {
      std::vector<std::vector<int>> cur(static_cast<size_t>(nk));
      auto rec = [&](auto&& self, size_t i) -> void {
        if (i == present.size()) {
          size_sets.push_back(cur);
          return;
        }
        for (const auto& c : choices[static_cast<size_t>(present[i])]) {
          cur[static_cast<size_t>(present[i])] = c;
          self(self, i + 1);
        }
      };
      rec(rec, 0);
    } else {
      double total = 0;
      for (const auto& k : kinds) total += k.capacity;
      for (int s : {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024}) {
        if (s < nk || s > max_stages) continue;
        // Largest remainder, at least one stage per kind, at most one stage per device.
        std::vector<int> per(static_cast<size_t>(nk), 1);
        int left = s - nk;
        std::vector<std::pair<double, int>> rem;
        for (int i = 0; i < nk; ++i) {
          const double want = s * kinds[i].capacity / total - 1;
          const int add = std::clamp(static_cast<int>(want), 0, std::min(left, kinds[i].units() - 1));
          per[static_cast<size_t>(i)] += add;
          left -= add;
          rem.push_back({-(want - add), i});
        }
        std::sort(rem.begin(), rem.end());
        for (size_t r = 0; left > 0 && r < rem.size(); ++r) {
          const int i = rem[r].second;
          if (per[static_cast<size_t>(i)] < kinds[i].units()) {
            ++per[static_cast<size_t>(i)];
            --left;
          }
        }
        std::vector<std::vector<int>> sizes(static_cast<size_t>(nk));
        for (int i = 0; i < nk; ++i)
          sizes[static_cast<size_t>(i)] = near_even(kinds[i].units(), per[static_cast<size_t>(i)]);
        size_sets.push_back(std::move(sizes));
      }
    }
    for (const auto& sizes : size_sets) {
      int stages = 0;
      for (int ki : present) stages += static_cast<int>(sizes[static_cast<size_t>(ki)].size());
      if (stages > max_stages) continue;
      std::vector<int> order = present;
      do {
        layouts.push_back(make_slots(model, kinds, order, sizes));
      } while (std::next_permutation(order.begin(), order.end()));
    }
  }
}

}  // namespace

std::vector<std::vector<ChainSlot>> hybrid_layouts(const StageModel& model, int max_stages) {
  std::vector<std::vector<ChainSlot>> layouts;
  const auto plain = device_kinds(model);
  const bool can_split = TensorModel(model).has_split(0, model.num_nodes() - 1);
  for (int unit : kTensorSizes) {
    // One family of layouts per tensor-parallel size: the kinds whose devices form whole groups of `unit` on
    // one node use it, the others stay data parallel; a size no kind can use adds nothing.
    std::vector<Kind> kinds = plain;
    bool any = unit == 1;
    for (Kind& k : kinds) {
      if (unit > 1 && can_split && units_on_one_node(model, k, unit)) {
        k.unit = unit;
        any = true;
      }
    }
    if (!any) continue;
    add_layouts(model, kinds, max_stages, layouts);
  }
  return layouts;
}

std::optional<PipelineChoice> best_hybrid(const StageModel& model, const TensorModel& tensor,
                                          const std::vector<NodeId>& blocks,
                                          const std::vector<std::vector<ChainSlot>>& layouts,
                                          int microbatches, Schedule schedule) {
  std::optional<PipelineChoice> best;
  const int mb = model.options().global_batch / microbatches;
  for (const auto& slots : layouts) {
    ChainProblem problem{&model, blocks, slots, microbatches, mb, schedule, &tensor};
    auto sol = partition_chain(problem);
    if (!sol) continue;
    if (!best || sol->better_than(best->solution)) {
      best = PipelineChoice{std::move(problem), std::move(*sol)};
    }
  }
  return best;
}

std::vector<Plan> hybrid_candidates(const StageModel& model, const std::vector<NodeId>& blocks) {
  const auto layouts = hybrid_layouts(model, static_cast<int>(blocks.size()));
  const TensorModel tensor(model);
  struct Scored {
    Seconds estimate;
    Plan plan;
  };
  std::vector<Scored> scored;
  // A pipeline of S stages idles (S - 1) / (m + S - 1) of the step: deep layouts need more microbatches than
  // the default cap allows, so the cap rises to 4 x the deepest layout (still divisors of the batch).
  SearchOptions wide = model.options();
  size_t deepest = 1;
  for (const auto& l : layouts) deepest = std::max(deepest, l.size());
  if (wide.microbatches == 0)
    wide.max_microbatches = std::max(wide.max_microbatches, 4 * static_cast<int>(deepest));
  // Each microbatch count is searched on its own (on several threads; results in the count's place, so the
  // outcome does not depend on the thread count).
  const std::vector<int> counts = microbatch_candidates(wide, 1);
  std::vector<std::optional<Scored>> per_count(counts.size());
  detail::parallel_for(counts.size(), [&](size_t i) {
    const int m = counts[i];
    // Layouts whose groups are wider than the microbatch leave devices without samples: skip them.
    std::vector<std::vector<ChainSlot>> usable;
    const int mb = model.options().global_batch / m;
    for (const auto& l : layouts) {
      if (std::all_of(l.begin(), l.end(), [&](const ChainSlot& s) { return s.replicas() <= mb; })) {
        usable.push_back(l);
      }
    }
    auto choice = best_hybrid(model, tensor, blocks, usable, m, Schedule::kOneFOneB);
    if (!choice) return;
    Plan plan = chain_to_plan(choice->problem, choice->solution, StrategyKind::kHybrid);
    mark_unused_devices(plan, model.cluster(), "its device kind made the pipeline's bottleneck worse");
    per_count[i] = Scored{choice->solution.estimate, std::move(plan)};
  });
  for (auto& s : per_count) {
    if (s) scored.push_back(std::move(*s));
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const Scored& a, const Scored& b) { return a.estimate < b.estimate; });
  std::vector<Plan> out;
  for (auto& s : scored) out.push_back(std::move(s.plan));
  return out;
}

}  // namespace partita

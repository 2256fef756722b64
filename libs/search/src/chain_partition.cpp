#include "partita/search/chain_partition.h"

#include <algorithm>
#include <array>
#include <bit>
#include <limits>

#include "partita/core/error.h"
#include "partita/search/collective_time.h"

namespace partita {

std::vector<int> even_shares(int microbatch_size, int devices) {
  std::vector<int> shares(static_cast<size_t>(devices), microbatch_size / devices);
  for (int i = 0; i < microbatch_size % devices; ++i) ++shares[static_cast<size_t>(i)];
  return shares;
}

namespace {

int in_flight(const ChainProblem& p, int slot) {
  if (!p.model->training()) return 1;
  if (p.schedule == Schedule::kGPipe) return p.microbatches;
  return std::min(static_cast<int>(p.slots.size()) - slot, p.microbatches);
}

}  // namespace

namespace {

// What evaluating a stage needs of its slot that does not depend on the range: worked out once per slot (a
// hybrid slot may have hundreds of devices).
struct SlotFacts {
  // [WeightHome] the tightest memory cap of the slot's devices that hold the weights that way (a CPU device
  // the host's tensors, the others as StageModel::weight_home says); empty when no device does.
  std::array<std::optional<Bytes>, 3> caps;
  std::vector<Savings> savings;
};

SlotFacts slot_facts(const StageModel& m, const ChainSlot& s) {
  SlotFacts facts;
  const int d = static_cast<int>(s.devices.size());
  for (int dev : s.devices) {
    std::optional<Bytes>& cap = facts.caps[static_cast<size_t>(m.weight_home(dev, d))];
    cap = std::min(cap.value_or(m.memory_cap(dev)), m.memory_cap(dev));
  }
  facts.savings = m.savings_choices(s.devices);
  return facts;
}

std::vector<SlotFacts> all_slot_facts(const ChainProblem& problem) {
  std::vector<SlotFacts> facts;
  for (const ChainSlot& s : problem.slots) facts.push_back(slot_facts(*problem.model, s));
  return facts;
}

// A slot of replicas of tensor-parallel groups (see the header): no checkpointing or full checkpointing.
std::optional<StageChoice> evaluate_tensor(const ChainProblem& problem, int slot, const SlotFacts& facts,
                                           NodeId first, NodeId last) {
  const StageModel& m = *problem.model;
  PARTITA_ASSERT(problem.tensor != nullptr, "chain problem: slot ", slot,
                 " is tensor-parallel but the problem has no TensorModel");
  const TensorModel& tm = *problem.tensor;
  const ChainSlot& s = problem.slots[static_cast<size_t>(slot)];
  const int t = s.tensor_size, r = s.replicas();
  const int share = (problem.microbatch_size + r - 1) / r;
  if (share == 0) return std::nullopt;
  const int spec = m.spec_of(s.devices[0]);
  std::optional<Bytes> cap;
  for (const auto& c : facts.caps) {
    if (c) cap = std::min(cap.value_or(*c), *c);
  }
  const Seconds allreduce =
      m.training() && r > 1
          ? fast_allreduce_time(tm.trainable_bytes_per_device(first, last, t), r, s.group_link)
          : Seconds(0);
  const Seconds fwd = tm.forward(spec, first, last, share, t, s.tensor_link);
  const Seconds bwd = m.training() ? tm.backward(spec, first, last, share, t, s.tensor_link) : Seconds(0);
  const int kept = in_flight(problem, slot);
  std::optional<StageChoice> best;
  for (const Checkpointing c : {Checkpointing::kNone, Checkpointing::kFull}) {
    // Checkpointing runs the forward twice: it is tried only when the stage does not fit without it.
    if (c == Checkpointing::kFull && (!m.training() || best)) break;
    const Bytes memory = tm.memory(first, last, share, t, kept, s.devices[0], problem.microbatches, c);
    if (cap && memory > *cap) continue;
    const Seconds per_mb = c == Checkpointing::kFull ? fwd + fwd + bwd : fwd + bwd;
    const Seconds busy = per_mb * static_cast<double>(problem.microbatches) + allreduce;
    if (!best || busy < best->busy) best = StageChoice{first, last, c, Offload::kNone, busy, per_mb};
  }
  return best;
}

std::optional<StageChoice> evaluate(const ChainProblem& problem, int slot, const SlotFacts& facts,
                                    NodeId first, NodeId last) {
  const StageModel& m = *problem.model;
  const ChainSlot& s = problem.slots[static_cast<size_t>(slot)];
  if (s.tensor_size > 1) return evaluate_tensor(problem, slot, facts, first, last);
  const int d = static_cast<int>(s.devices.size());
  const int share = (problem.microbatch_size + d - 1) / d;  // the largest share bounds time and memory
  if (share == 0) return std::nullopt;
  const int spec = m.spec_of(s.devices[0]);
  const Seconds allreduce = m.training() && d > 1
                                ? fast_allreduce_time(m.trainable_bytes(first, last), d, s.group_link)
                                : Seconds(0);
  std::optional<StageChoice> best;
  for (const Savings& sv : facts.savings) {
    StageLoad load{first, last, share, in_flight(problem, slot), sv.checkpointing, sv.offload};
    load.device = s.devices[0];  // a slot's devices are of one kind
    load.microbatches = problem.microbatches;
    bool fits = true;
    for (size_t home = 0; home < facts.caps.size() && fits; ++home) {
      load.weights = static_cast<WeightHome>(home);
      fits = !facts.caps[home] || m.memory(load) <= *facts.caps[home];
    }
    if (!fits) continue;
    const Seconds per_mb = m.microbatch_time(spec, load);
    const Seconds busy =
        per_mb * static_cast<double>(problem.microbatches) + allreduce + m.offload_time(load);
    if (!best || busy < best->busy)
      best = StageChoice{first, last, sv.checkpointing, sv.offload, busy, per_mb};
    // Every saving costs time (a second forward, copies to the host and back): none is tried once the stage
    // fits without one (savings_choices lists that first), as none could be faster.
    if (sv.checkpointing == Checkpointing::kNone && sv.offload == Offload::kNone) break;
  }
  return best;
}

}  // namespace

std::optional<StageChoice> evaluate_stage(const ChainProblem& problem, int slot, NodeId first, NodeId last) {
  return evaluate(problem, slot, slot_facts(*problem.model, problem.slots[static_cast<size_t>(slot)]), first,
                  last);
}

Seconds evaluate_link(const ChainProblem& problem, int slot, NodeId after) {
  const ChainSlot& a = problem.slots[static_cast<size_t>(slot)];
  const ChainSlot& b = problem.slots[static_cast<size_t>(slot) + 1];
  const int lanes = std::min(a.replicas(), b.replicas());
  const int samples = (problem.microbatch_size + lanes - 1) / lanes;
  const Bytes bytes = problem.model->boundary_bytes(after, samples);
  return (a.next_link.latency + bytes / a.next_link.bandwidth) * static_cast<double>(problem.microbatches);
}

Seconds estimate_step(const ChainProblem& problem, const std::vector<StageChoice>& stages) {
  // Bottleneck plus fill/drain: every other stage and link passes one microbatch before/after the bottleneck.
  Seconds bottleneck(0), fill(0), largest(0);
  const double m = problem.microbatches;
  for (size_t j = 0; j < stages.size(); ++j) {
    bottleneck = std::max(bottleneck, stages[j].busy);
    fill += stages[j].per_microbatch;
    largest = std::max(largest, stages[j].per_microbatch);
    if (j + 1 < stages.size()) {
      const Seconds link = evaluate_link(problem, static_cast<int>(j), stages[j].last);
      bottleneck = std::max(bottleneck, link);
      fill += link / m;
    }
  }
  return bottleneck + fill - largest;
}

std::optional<ChainSolution> partition_chain(const ChainProblem& problem) {
  const auto& ends = problem.block_ends;
  const int nb = static_cast<int>(ends.size());
  const int ns = static_cast<int>(problem.slots.size());
  if (ns == 0 || ns > nb) return std::nullopt;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  auto first_of = [&](int block) { return block == 0 ? 0 : ends[static_cast<size_t>(block) - 1] + 1; };
  auto lower_bound = [&](int slot, NodeId first, NodeId last) {
    const ChainSlot& s = problem.slots[static_cast<size_t>(slot)];
    const int r = s.replicas();
    const StageLoad load{first,         last, (problem.microbatch_size + r - 1) / r, 1, Checkpointing::kNone,
                         Offload::kNone};
    // Tensor parallelism divides at most all of the compute by its degree.
    return problem.model->microbatch_time(problem.model->spec_of(s.devices[0]), load).value() *
           problem.microbatches / s.tensor_size;
  };
  const std::vector<SlotFacts> facts = all_slot_facts(problem);
  // best[j][b]: least bottleneck with slots 0..j holding blocks 0..b, slot j ending at block b.
  std::vector<std::vector<double>> best(static_cast<size_t>(ns),
                                        std::vector<double>(static_cast<size_t>(nb), kInf));
  std::vector<std::vector<int>> parent(static_cast<size_t>(ns),
                                       std::vector<int>(static_cast<size_t>(nb), -1));
  for (int b = 0; b <= nb - ns; ++b) {
    if (auto st = evaluate(problem, 0, facts[0], 0, ends[static_cast<size_t>(b)]))
      best[0][b] = st->busy.value();
  }
  for (int j = 1; j < ns; ++j) {
    for (int b = j; b <= nb - ns + j; ++b) {
      for (int a = b - 1; a >= j - 1; --a) {
        // The stage's plain compute only grows as it takes more blocks: once it alone reaches the best, stop.
        const NodeId first = first_of(a + 1);
        if (lower_bound(j, first, ends[static_cast<size_t>(b)]) >= best[j][b]) break;
        const double prev = best[j - 1][a];
        if (prev >= best[j][b]) continue;  // cannot improve
        const double link = evaluate_link(problem, j - 1, ends[static_cast<size_t>(a)]).value();
        if (link >= best[j][b]) continue;
        const auto st =
            evaluate(problem, j, facts[static_cast<size_t>(j)], first, ends[static_cast<size_t>(b)]);
        if (!st) continue;  // memory is not monotone in the range (its input size varies)
        const double v = std::max({prev, link, st->busy.value()});
        if (v < best[j][b]) {
          best[j][b] = v;
          parent[j][b] = a;
        }
      }
    }
  }
  if (best[ns - 1][nb - 1] == kInf) return std::nullopt;
  ChainSolution sol;
  sol.stages.resize(static_cast<size_t>(ns));
  for (int j = ns - 1, b = nb - 1; j >= 0; b = parent[j][b], --j) {
    const int a = j == 0 ? -1 : parent[j][b];
    sol.stages[static_cast<size_t>(j)] =
        *evaluate(problem, j, facts[static_cast<size_t>(j)], first_of(a + 1), ends[static_cast<size_t>(b)]);
  }
  sol.bottleneck = Seconds(best[ns - 1][nb - 1]);
  sol.estimate = estimate_step(problem, sol.stages);
  return sol;
}

std::optional<ChainSolution> partition_chain_brute_force(const ChainProblem& problem) {
  const auto& ends = problem.block_ends;
  const int nb = static_cast<int>(ends.size());
  const int ns = static_cast<int>(problem.slots.size());
  if (ns == 0 || ns > nb) return std::nullopt;
  const std::vector<SlotFacts> facts = all_slot_facts(problem);
  std::optional<ChainSolution> best;
  std::vector<int> last(static_cast<size_t>(ns));  // last block of each slot
  // Enumerate increasing sequences last[0] < ... < last[ns-1] = nb-1.
  auto visit = [&](auto&& self, int j, int from) -> void {
    if (j == ns - 1) {
      last[static_cast<size_t>(j)] = nb - 1;
      ChainSolution sol;
      double bottleneck = 0;
      for (int k = 0; k < ns; ++k) {
        const NodeId f = k == 0 ? 0 : ends[static_cast<size_t>(last[k - 1])] + 1;
        const auto st =
            evaluate(problem, k, facts[static_cast<size_t>(k)], f, ends[static_cast<size_t>(last[k])]);
        if (!st) return;
        bottleneck = std::max(bottleneck, st->busy.value());
        if (k + 1 < ns) bottleneck = std::max(bottleneck, evaluate_link(problem, k, st->last).value());
        sol.stages.push_back(*st);
      }
      sol.bottleneck = Seconds(bottleneck);
      sol.estimate = estimate_step(problem, sol.stages);
      if (!best || sol.bottleneck < best->bottleneck) best = std::move(sol);
      return;
    }
    for (int b = from; b <= nb - ns + j; ++b) {
      last[static_cast<size_t>(j)] = b;
      self(self, j + 1, b + 1);
    }
  };
  visit(visit, 0, 0);
  return best;
}

}  // namespace partita

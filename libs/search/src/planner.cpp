#include "partita/search/planner.h"

#include "partita/search/plan_json.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <set>

#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/graph/analysis.h"
#include "partita/search/blocks.h"
#include "partita/search/branch_strategy.h"
#include "partita/search/cut_refinement.h"
#include "partita/search/data_parallel_strategy.h"
#include "partita/search/even_strategy.h"
#include "partita/search/hybrid_strategy.h"
#include "partita/search/objective.h"
#include "partita/search/pipeline_strategy.h"
#include "partita/search/plan_json.h"
#include "partita/search/process_layout.h"
#include "partita/search/simulator.h"
#include "partita/search/stage_model.h"
#include "partita/search/tensor_strategy.h"

namespace partita {

namespace {

// Simulating is the expensive part at scale: only the best few closed-form estimates of each generator.
constexpr size_t kSimulatedPerStrategy = 4;

void append(std::vector<Plan>& out, std::vector<Plan> more) {
  if (more.size() > kSimulatedPerStrategy) more.resize(kSimulatedPerStrategy);
  for (auto& p : more) out.push_back(std::move(p));
}

// Candidates whose devices fit their memory and whose machines fit their host memory (the latter is not
// checked for what-if planning with MemoryCap::kLimitOnly, which asks about the devices alone).
// host_note: when some candidate fit its devices but not its host memory, the note of the one that needed
// the least host memory.
// refine: pipeline and hybrid plans get their cuts refined by simulation (cut_refinement.h); not needed where
// only feasibility matters (the search for the smallest memory).
std::vector<Plan> feasible_evaluated(const Graph& graph, const Cluster& cluster, const CostTable& table,
                                     const SearchOptions& options, std::string* host_note = nullptr,
                                     bool refine = false) {
  std::vector<Plan> out;
  std::optional<std::vector<bool>> pipeline_cuts, hybrid_cut_flags;  // computed when first needed
  Bytes least_host(std::numeric_limits<int64_t>::max());
  const bool check_hosts = options.memory_cap == MemoryCap::kDeviceAndLimit;
  for (Plan& p : generate_candidates(graph, cluster, table, options)) {
    if (options.every_device && p.used_devices().size() < cluster.devices.size()) continue;
    if (!options.batch_splittable && p.splits_batch()) continue;
    if (p.smallest_share() < options.min_batch_share) continue;
    p.processes = options.processes;  // what the generators costed (see generate_candidates)
    const Simulation sim = simulate(p, graph, cluster, table, options);
    if (!sim.fits_memory) continue;  // never returned or ranked
    if (check_hosts && !sim.fits_host_memory) {
      Bytes most(0);
      for (const auto& h : sim.prediction.hosts) most = std::max(most, h.peak_memory);
      if (host_note != nullptr && most < least_host) least_host = most, *host_note = sim.host_memory_note;
      continue;
    }
    p.prediction = sim.prediction;
    if (refine && options.refine_cuts && refinable(p) &&
        (p.strategy == StrategyKind::kPipeline || p.strategy == StrategyKind::kHybrid)) {
      // The same cuts the strategy itself was allowed (see generate_candidates).
      auto& allowed = p.strategy == StrategyKind::kPipeline ? pipeline_cuts : hybrid_cut_flags;
      if (!allowed)
        allowed = p.strategy == StrategyKind::kPipeline ? process_cuts(graph) : hybrid_cuts(graph);
      p = refine_cuts(std::move(p), graph, cluster, table, options, *allowed).plan;
    }
    out.push_back(std::move(p));
  }
  return out;
}

// A plan's layout: how it runs, without its label, prediction or source. Two strategies can propose the
// same layout (a hybrid whose groups are all one device is a pipeline); the planner keeps the first.
std::string layout_key(const Plan& p) {
  Json j = plan_to_json(p);
  for (const char* key : {"strategy", "predicted_step_ms", "predicted_peak_bytes", "predicted_joules",
                          "prediction", "source", "unused_devices"}) {
    j.erase(key);
  }
  return j.dump();
}

std::optional<Bytes> smallest_memory(const Graph& graph, const Cluster& cluster, const CostTable& table,
                                     SearchOptions options) {
  options.memory_cap = MemoryCap::kLimitOnly;
  auto feasible = [&](int64_t bytes) {
    options.memory_limit = Bytes(bytes);
    return !feasible_evaluated(graph, cluster, table, options).empty();
  };
  int64_t lo = 0, hi = int64_t{1} << 20;
  while (!feasible(hi)) {
    lo = hi;
    if (hi > (int64_t{1} << 60)) return std::nullopt;
    hi *= 2;
  }
  while (hi - lo > std::max<int64_t>(hi / 1000, 1)) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (feasible(mid))
      hi = mid;
    else
      lo = mid;
  }
  return Bytes(hi);
}

}  // namespace

std::vector<Plan> generate_candidates(const Graph& graph, const Cluster& cluster, const CostTable& table,
                                      const SearchOptions& options) {
  SearchOptions whole = options;
  // A model that must see its whole batch: strategies need not search microbatch counts.
  if (!options.batch_splittable) whole.max_microbatches = 1;
  const StageModel model(graph, cluster, table, whole);
  // A launched plan's devices of one machine pass data between processes (process_layout.h). Each strategy's
  // closed-form estimate costs the links its layout crosses: a pipeline's or a branch plan's stages (a
  // process each, one device each) the message link, a one-stage plan's devices (a process each) the
  // collective link. A hybrid's groups keep a process per stage, collectives inside it and messages between
  // stages: it keeps the in-process links, and the simulator, which ranks every candidate and refines a
  // hybrid's cuts, sees both.
  std::optional<Cluster> message_cluster, collective_cluster;
  std::optional<StageModel> message_model, collective_model;
  if (options.processes == ProcessLayout::kLaunch) {
    PARTITA_ASSERT(options.process_links.has_value(), "launched plans without links between processes");
    message_cluster = cluster_of_separate_processes(cluster, options.process_links->message);
    collective_cluster = cluster_of_separate_processes(cluster, options.process_links->collective);
    message_model = model.over_links_of(*message_cluster);
    collective_model = model.over_links_of(*collective_cluster);
  }
  const StageModel& messages = message_model ? *message_model : model;
  const StageModel& collectives = collective_model ? *collective_model : model;
  const auto blocks = block_ends(model, options.max_blocks);
  std::vector<Plan> out;
  const StrategyKind s = options.strategy;
  if (s == StrategyKind::kAuto || s == StrategyKind::kData)
    append(out, data_parallel_candidates(collectives));
  if (s == StrategyKind::kAuto || s == StrategyKind::kPipeline)
    // Only cuts whose values can travel between processes (no lists or tuples), so a pipeline plan runs
    // with a process per stage as well as in one process.
    append(out, pipeline_candidates(messages, allowed_block_ends(blocks, process_cuts(graph))));
  // A hybrid plan's devices split each microbatch differently on the two sides of a cut: only cuts whose
  // values can be split by the batch (or are the same on every device) are offered, as the engine runs them.
  if (s == StrategyKind::kAuto || s == StrategyKind::kHybrid)
    append(out, hybrid_candidates(model, allowed_block_ends(blocks, hybrid_cuts(graph))));
  if (s == StrategyKind::kAuto || s == StrategyKind::kBranch) {
    std::vector<Plan> branch = branch_candidates(messages);
    // Under auto, a branch plan on one device is the one-device plan the data-parallel strategy offers, run
    // node by node: it could only win by noise (asked for by name, it is the branch strategy's answer).
    if (s == StrategyKind::kAuto) {
      branch.erase(
          std::remove_if(branch.begin(), branch.end(), [](const Plan& p) { return p.stages.size() < 2; }),
          branch.end());
    }
    append(out, branch);
  }
  if (s == StrategyKind::kAuto || s == StrategyKind::kTensor) append(out, tensor_candidates(collectives));
  if (s == StrategyKind::kEven) append(out, even_candidates(model));
  return out;
}

PlanOutcome make_plan(const Graph& graph, const Cluster& cluster, const CostTable& table,
                      const SearchOptions& options) {
  options.validate();
  PARTITA_CHECK(!cluster.devices.empty(), "cluster '", cluster.name, "' has no devices to plan for");
  PlanOutcome outcome;
  std::string host_note;
  std::vector<Plan> plans = feasible_evaluated(graph, cluster, table, options, &host_note, /*refine=*/true);
  if (plans.empty() && !host_note.empty()) {
    outcome.error = "no plan fits in host memory: with the least of it, " + host_note +
                    "; use machines with more memory, fewer devices per machine or lower the batch";
    return outcome;
  }
  if (plans.empty() && options.every_device) {
    // A model that must see its whole batch has no data parallelism: say so, it is usually why.
    outcome.error =
        "no candidate plan uses all " + std::to_string(cluster.devices.size()) + " devices and fits" +
        (options.batch_splittable ? ""
                                  : " with the batch kept whole (the model computes something else "
                                    "on part of it: no data parallelism or microbatches)") +
        (options.batch_splittable && options.global_batch < static_cast<int>(cluster.devices.size())
             ? " (a batch of " + std::to_string(options.global_batch) + " gives " +
                   std::to_string(cluster.devices.size()) + " data-parallel replicas less than a sample each)"
             : "") +
        "; drop --all-devices, list fewer devices or try another --strategy";
    return outcome;
  }
  if (plans.empty()) {
    SearchOptions unlimited = options;  // without the memory limit: does the strategy apply at all?
    unlimited.memory_limit.reset();
    unlimited.memory_cap = MemoryCap::kLimitOnly;
    if (options.strategy == StrategyKind::kTensor &&
        generate_candidates(graph, cluster, table, unlimited).empty()) {
      outcome.error =
          "strategy 'tensor' has nothing to offer here: it needs at least two devices of one kind on one "
          "machine and a graph with weight matmuls; try --strategy auto";
      return outcome;
    }
    if (options.strategy == StrategyKind::kBranch && first_read_seeing_a_write(graph) != kNoNode) {
      outcome.error =
          "strategy 'branch' has nothing to offer here: node " +
          std::to_string(first_read_seeing_a_write(graph)) +
          " reads storage after an in-place write into it through another value (a slice "
          "assignment such as z[:, 16:] = b before reading z), which branch plans do not run; try "
          "--strategy auto, pipeline or data";
      return outcome;
    }
    outcome.min_memory = smallest_memory(graph, cluster, table, options);
    outcome.error = "no plan fits in memory";
    if (outcome.min_memory) {
      outcome.error += ": the smallest per-device memory for which a plan exists is " +
                       format_bytes(*outcome.min_memory) + " (" +
                       std::to_string(outcome.min_memory->value()) +
                       " bytes); raise the memory limit, add devices or lower the batch";
    }
    return outcome;
  }
  std::set<std::string> layouts;
  for (size_t i : rank_candidates(plans, options.objective)) {
    if (layouts.insert(layout_key(plans[i])).second) outcome.candidates.push_back(plans[i]);
  }
  outcome.pareto = pareto_front(outcome.candidates);
  outcome.plan = outcome.candidates.front();
  return outcome;
}

}  // namespace partita

#pragma once
// Shared by the hybrid engine tests (one process and across processes): two-stage hybrid plans over the
// layouts that matter, pipelines of tensor groups, and the cut a hybrid plan can split.
#include <string>
#include <vector>

#include "partita/graph/analysis.h"
#include "partita/search/graph_identity.h"
#include "partita/search/plan.h"

namespace partita::testing {

// Groups of devices on this machine's two cores: "cpu" (both) and "cpu:0-1" (both again) are devices of their
// own, so four distinct devices fit on two cores (oversubscribed: this tests the math, not the speed).
// SGD with momentum, not Adam: Adam turns rounding noise in ~0 gradients into lr-sized steps, and the
// replicas of a stage add their gradients in thread order (a hybrid run differs from itself by 1e-4 under
// Adam, so parameters could not be compared).
inline Plan hybrid_plan(const Graph& g, Mode mode, int batch, int microbatches, NodeId cut, DeviceGroup first,
                        DeviceGroup second) {
  Plan p;
  p.graph = graph_identity(g);
  p.mode = mode;
  p.strategy = StrategyKind::kHybrid;
  p.schedule = Schedule::kOneFOneB;
  p.optimizer = Optimizer::kSgdMomentum;
  p.global_batch = batch;
  p.microbatches = microbatches;
  p.groups = {std::move(first), std::move(second)};
  p.stages = {Stage{0, cut, 0}, Stage{cut + 1, g.num_nodes() - 1, 1}};
  return p;
}

// A 2-stage pipeline cut after `cut` whose stages are tensor groups (a stage of several devices: each holds
// the whole microbatch) or single devices (`devices`: each stage's); SGD with momentum, 1F1B.
inline Plan tensor_pipeline_plan(const Graph& g, Mode mode, int batch, int microbatches, NodeId cut,
                                 const std::vector<std::vector<std::string>>& devices) {
  Plan p = hybrid_plan(g, mode, batch, microbatches, cut, {}, {});
  p.groups.clear();
  for (const auto& ids : devices) {
    DeviceGroup group;
    group.devices = ids;
    group.batch_shares.assign(ids.size(), batch / microbatches);
    group.parallelism = ids.size() > 1 ? GroupParallelism::kTensor : GroupParallelism::kData;
    p.groups.push_back(group);
  }
  return p;
}

struct HybridLayout {
  const char* name;
  DeviceGroup first, second;  // shares of one microbatch
};

// Microbatches of 4 samples: shares that line up, that cut across each other, and one device against two.
inline const HybridLayout kHybridLayouts[] = {
    {"2 devices then 1", DeviceGroup{{"cpu:0", "cpu:1"}, {1, 3}}, DeviceGroup{{"cpu"}, {4}}},
    {"1 device then 2", DeviceGroup{{"cpu"}, {4}}, DeviceGroup{{"cpu:0", "cpu:1"}, {3, 1}}},
    {"2 then 2, crossing", DeviceGroup{{"cpu:0", "cpu:1"}, {1, 3}}, DeviceGroup{{"cpu", "cpu:0-1"}, {3, 1}}},
};

// The cut a hybrid plan can split (graph/analysis.h's hybrid_cuts) nearest the best single cut.
inline NodeId splittable_cut(const Graph& g) {
  const NodeId middle = best_cut_points(g, 1)[0].after_node;
  const std::vector<bool> cuts = hybrid_cuts(g);
  for (NodeId d = 0; d < g.num_nodes(); ++d) {
    for (const NodeId n : {middle - d, middle + d}) {
      if (n >= 0 && n + 1 < g.num_nodes() && cuts[static_cast<size_t>(n)]) return n;
    }
  }
  return kNoNode;
}

}  // namespace partita::testing

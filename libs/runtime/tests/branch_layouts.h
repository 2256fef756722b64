#pragma once
// Shared by the branch engine tests (one process and across processes): branch plans from a device per
// node, and the assignments that matter (branches alternated, every other node, random).
#include <random>
#include <string>
#include <vector>

#include "partita/graph/analysis.h"
#include "partita/search/graph_identity.h"
#include "partita/search/plan.h"

namespace partita::testing {

// Devices cpu:0 and cpu:1 (and cpu for a third); device_of[node] picks one. Lists in node order (a
// topological order), so any assignment is a valid plan. SGD with momentum, GPipe.
inline Plan branch_plan(const Graph& g, Mode mode, int batch, int microbatches,
                        const std::vector<int>& device_of) {
  Plan p;
  p.graph = graph_identity(g);
  p.mode = mode;
  p.strategy = StrategyKind::kBranch;
  p.schedule = Schedule::kGPipe;
  p.optimizer = Optimizer::kSgdMomentum;
  p.global_batch = batch;
  p.microbatches = microbatches;
  const std::vector<std::string> ids = {"cpu:0", "cpu:1", "cpu"};
  for (int d = 0; d < static_cast<int>(ids.size()); ++d) {
    Stage st;
    for (NodeId i = 0; i < g.num_nodes(); ++i) {
      if (device_of[static_cast<size_t>(i)] == d) st.nodes.push_back(i);
    }
    if (st.nodes.empty()) continue;
    st.first = st.nodes.front();
    st.last = st.nodes.back();
    p.groups.push_back(DeviceGroup{{ids[static_cast<size_t>(d)]}, {batch / microbatches}});
    st.group = static_cast<int>(p.groups.size()) - 1;
    p.stages.push_back(std::move(st));
  }
  return p;
}

// Branches of every fork/join region spread over `devices` devices in turn (what a branch planner does).
inline std::vector<int> by_branches(const Graph& g, int devices = 2) {
  std::vector<int> device_of(static_cast<size_t>(g.num_nodes()), 0);
  for (const BranchRegion& region : independent_branches(g)) {
    for (size_t b = 0; b < region.branches.size(); ++b) {
      for (NodeId n : region.branches[b].nodes)
        device_of[static_cast<size_t>(n)] = static_cast<int>(b % static_cast<size_t>(devices));
    }
  }
  return device_of;
}

// Every other node: as many crossings as possible.
inline std::vector<int> alternating(const Graph& g) {
  std::vector<int> device_of(static_cast<size_t>(g.num_nodes()));
  for (size_t i = 0; i < device_of.size(); ++i) device_of[i] = static_cast<int>(i % 2);
  return device_of;
}

inline std::vector<int> shuffled(const Graph& g, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<int> device_of(static_cast<size_t>(g.num_nodes()));
  for (auto& d : device_of) d = static_cast<int>(rng() % 2);
  return device_of;
}

}  // namespace partita::testing

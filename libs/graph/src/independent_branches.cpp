#include <algorithm>

#include "partita/graph/analysis.h"
#include "partita/graph/op_cost.h"

namespace partita {

int BranchRegion::non_trivial_branches() const {
  return static_cast<int>(
      std::count_if(branches.begin(), branches.end(), [](const Branch& b) { return !b.trivial; }));
}

namespace {

// The node DAG extended with one virtual source per user input and a virtual sink. Points 0..N-1 are the
// nodes, N..N+I-1 the user inputs, N+I the sink.
struct PointGraph {
  int num_nodes = 0;
  int sink = 0;
  std::vector<std::vector<int>> succs;
  std::vector<int> order;  // topological: inputs, nodes, sink
};

PointGraph build_points(const Graph& graph) {
  PointGraph pg;
  pg.num_nodes = graph.num_nodes();
  const int num_inputs = static_cast<int>(graph.inputs().size());
  pg.sink = pg.num_nodes + num_inputs;
  pg.succs.resize(static_cast<size_t>(pg.sink) + 1);
  std::vector<bool> is_output(graph.values().size(), false);
  for (ValueId v : graph.outputs()) is_output[v] = true;
  const auto node_succs = node_successors(graph);
  for (int n = 0; n < pg.num_nodes; ++n) {
    pg.succs[n].assign(node_succs[n].begin(), node_succs[n].end());
    const auto& outs = graph.node(n).outputs;
    const bool feeds_output = std::any_of(outs.begin(), outs.end(), [&](ValueId v) { return is_output[v]; });
    if (feeds_output || pg.succs[n].empty()) pg.succs[n].push_back(pg.sink);
  }
  for (int i = 0; i < num_inputs; ++i) {
    const ValueId v = graph.inputs()[i];
    auto& s = pg.succs[pg.num_nodes + i];
    s.assign(graph.value(v).users.begin(), graph.value(v).users.end());
    std::sort(s.begin(), s.end());
    s.erase(std::unique(s.begin(), s.end()), s.end());
    if (is_output[v] || s.empty()) s.push_back(pg.sink);
  }
  for (int i = 0; i < num_inputs; ++i) pg.order.push_back(pg.num_nodes + i);
  for (NodeId n : topological_order(graph)) pg.order.push_back(n);
  pg.order.push_back(pg.sink);
  return pg;
}

// Immediate post-dominators in one reverse-topological pass (Cooper, Harvey & Kennedy's intersection, which
// needs no iteration on a DAG): a point's post-dominators are the common ones of all its successors.
std::vector<int> post_dominators(const PointGraph& pg) {
  std::vector<int> rank(pg.order.size());
  for (size_t i = 0; i < pg.order.size(); ++i) rank[pg.order[i]] = static_cast<int>(i);
  std::vector<int> ipdom(pg.order.size(), -1);
  ipdom[pg.sink] = pg.sink;
  auto intersect = [&](int a, int b) {
    while (a != b) {
      while (rank[a] < rank[b]) a = ipdom[a];
      while (rank[b] < rank[a]) b = ipdom[b];
    }
    return a;
  };
  for (auto it = pg.order.rbegin() + 1; it != pg.order.rend(); ++it) {
    int dom = -1;
    for (int s : pg.succs[*it]) dom = dom == -1 ? s : intersect(dom, s);
    ipdom[*it] = dom;
  }
  return ipdom;
}

// Scratch state shared by all forks; stamps (the fork point) avoid clearing per fork.
struct Scratch {
  std::vector<int> in_region;  // the fork point whose region holds the node
  std::vector<int> component;  // the fork point for which the node already has a branch
  std::vector<NodeId> stack;
};

// Everything reachable from the fork without passing through the join, sorted by id.
std::vector<NodeId> collect_region(const PointGraph& pg, int fork, int join, Scratch& sc) {
  std::vector<NodeId> region;
  auto push = [&](int p) {
    if (p == join || p == pg.sink || sc.in_region[p] == fork) return;
    sc.in_region[p] = fork;
    sc.stack.push_back(p);
  };
  for (int s : pg.succs[fork]) push(s);
  while (!sc.stack.empty()) {
    const NodeId n = sc.stack.back();
    sc.stack.pop_back();
    region.push_back(n);
    for (int s : pg.succs[n]) push(s);
  }
  std::sort(region.begin(), region.end());
  return region;
}

// Weakly connected components of the region (edges both ways, inside the region only), by first node id.
std::vector<Branch> split_branches(const PointGraph& pg, const std::vector<std::vector<NodeId>>& preds,
                                   const std::vector<bool>& structural, const std::vector<NodeId>& region,
                                   int fork, Scratch& sc) {
  std::vector<Branch> branches;
  auto push = [&](int p) {
    if (p >= pg.num_nodes || sc.in_region[p] != fork || sc.component[p] == fork) return;
    sc.component[p] = fork;
    sc.stack.push_back(p);
  };
  for (NodeId seed : region) {
    if (sc.component[seed] == fork) continue;
    Branch b;
    push(seed);
    while (!sc.stack.empty()) {
      const NodeId n = sc.stack.back();
      sc.stack.pop_back();
      b.nodes.push_back(n);
      b.trivial = b.trivial && structural[n];
      for (int m : pg.succs[n]) push(m);
      for (NodeId m : preds[n]) push(m);
    }
    std::sort(b.nodes.begin(), b.nodes.end());
    branches.push_back(std::move(b));
  }
  return branches;
}

}  // namespace

std::vector<BranchRegion> independent_branches(const Graph& graph) {
  const PointGraph pg = build_points(graph);
  const std::vector<int> ipdom = post_dominators(pg);
  const auto preds = node_predecessors(graph);
  std::vector<bool> structural(graph.nodes().size());
  for (const auto& n : graph.nodes()) {
    structural[n.id] = estimate_cost(graph, n.id).status == CostStatus::kStructural;
  }
  Scratch sc{std::vector<int>(graph.nodes().size(), -1), std::vector<int>(graph.nodes().size(), -1), {}};
  std::vector<int> forks(pg.order.begin(), pg.order.end() - 1);
  std::sort(forks.begin(), forks.end(), [&](int a, int b) {  // user inputs first, then by node id
    return (a >= pg.num_nodes) != (b >= pg.num_nodes) ? a >= pg.num_nodes : a < b;
  });
  std::vector<BranchRegion> regions;
  for (int fork : forks) {
    const auto& fs = pg.succs[fork];
    if (fs.size() < 2) continue;
    const int join = ipdom[fork];
    BranchRegion r;
    r.fork = fork < pg.num_nodes ? fork : kNoNode;
    r.fork_input = fork < pg.num_nodes ? -1 : graph.inputs()[fork - pg.num_nodes];
    r.join = join < pg.num_nodes ? join : kNoNode;
    r.branches = split_branches(pg, preds, structural, collect_region(pg, fork, join, sc), fork, sc);
    if (std::find(fs.begin(), fs.end(), join) != fs.end()) r.branches.push_back(Branch{});  // the shortcut
    if (r.branches.size() >= 2 && r.non_trivial_branches() >= 1) regions.push_back(std::move(r));
  }
  return regions;
}

}  // namespace partita

#include "partita/search/branch_strategy.h"

#include <algorithm>
#include <numeric>

#include "partita/cost/comm.h"
#include "partita/graph/analysis.h"
#include "partita/search/chain_plan.h"

namespace partita {

namespace {

// Bytes per sample each (producer -> consumer) edge carries; edges are listed per consumer.
struct Edge {
  NodeId from = 0;
  double bytes_per_sample = 0;
  bool order_only = false;  // no data: a reader of a storage before an in-place write into it
};

std::vector<std::vector<Edge>> input_edges(const Graph& graph, double per_sample) {
  std::vector<std::vector<Edge>> in(static_cast<size_t>(graph.num_nodes()));
  for (const Node& node : graph.nodes()) {
    auto& list = in[static_cast<size_t>(node.id)];
    for (size_t k = 0; k < node.inputs.size(); ++k) {
      const Value& val = graph.value(node.inputs[k]);
      if (val.producer == kNoNode) continue;
      auto it = std::find_if(list.begin(), list.end(), [&](const Edge& e) { return e.from == val.producer; });
      if (it == list.end()) it = list.insert(list.end(), Edge{val.producer, 0});
      // A value read twice by one node still crosses once.
      if (std::find(node.inputs.begin(), node.inputs.begin() + static_cast<std::ptrdiff_t>(k),
                    node.inputs[k]) != node.inputs.begin() + static_cast<std::ptrdiff_t>(k)) {
        continue;
      }
      it->bytes_per_sample += static_cast<double>(val.bytes().value()) * per_sample;
    }
  }
  // A node reading a storage before an in-place write into it (graph/analysis.h's written_storages) must
  // precede the write where both land on one device; nothing else orders them.
  for (const WrittenStorage& s : written_storages(graph)) {
    for (NodeId w : s.writes) {
      auto& list = in[static_cast<size_t>(w)];
      for (ValueId v : s.members) {
        for (NodeId u : graph.value(v).users) {
          if (u >= w || std::any_of(list.begin(), list.end(), [&](const Edge& e) { return e.from == u; }))
            continue;
          list.push_back(Edge{u, 0, true});
        }
      }
    }
  }
  return in;
}

}  // namespace

BranchSchedule heft_schedule(const StageModel& model, const std::vector<int>& devices, int samples) {
  const Graph& graph = model.graph();
  const int n = graph.num_nodes();
  const int k = static_cast<int>(devices.size());
  const auto edges = input_edges(graph, 1.0 / model.graph_batch());
  // Node time per device, links between devices.
  std::vector<std::vector<double>> w(static_cast<size_t>(k), std::vector<double>(static_cast<size_t>(n)));
  for (int d = 0; d < k; ++d) {
    const int spec = model.spec_of(devices[static_cast<size_t>(d)]);
    for (NodeId i = 0; i < n; ++i) {
      double t = model.forward(spec, i, i, samples).value();
      if (model.training()) t += model.backward(spec, i, i, samples).value();
      w[d][i] = t;
    }
  }
  std::vector<std::vector<LinkSpec>> link(static_cast<size_t>(k),
                                          std::vector<LinkSpec>(static_cast<size_t>(k)));
  double mean_latency = 0, mean_inv_bw = 0;
  const auto& devs = model.cluster().devices;
  for (int a = 0; a < k; ++a) {
    for (int b = 0; b < k; ++b) {
      if (a == b) continue;
      link[a][b] = model.cluster().link_between(devs[static_cast<size_t>(devices[a])].id,
                                                devs[static_cast<size_t>(devices[b])].id);
      mean_latency += link[a][b].latency.value() / (k * (k - 1));
      mean_inv_bw += 1.0 / link[a][b].bandwidth.value() / (k * (k - 1));
    }
  }
  // Training sends each activation forward and its gradient back: twice the bytes.
  const double trips = model.training() ? 2.0 : 1.0;
  auto comm = [&](int a, int b, double bytes) {
    return a == b ? 0.0
                  : trips * (link[a][b].latency.value() + bytes * samples / link[a][b].bandwidth.value());
  };
  // Upward ranks over the topological node order (node ids), backwards.
  std::vector<double> rank(static_cast<size_t>(n), 0.0);
  std::vector<double> mean_w(static_cast<size_t>(n), 0.0);
  for (NodeId i = 0; i < n; ++i) {
    for (int d = 0; d < k; ++d) mean_w[i] += w[d][i] / k;
  }
  for (NodeId i = n - 1; i >= 0; --i) rank[i] += mean_w[i];
  for (NodeId i = n - 1; i >= 0; --i) {
    // rank[i] is final here (successors have higher ids); push it into its predecessors.
    for (const Edge& e : edges[static_cast<size_t>(i)]) {
      const double c =
          k > 1 && !e.order_only ? trips * (mean_latency + e.bytes_per_sample * samples * mean_inv_bw) : 0.0;
      rank[e.from] = std::max(rank[e.from], mean_w[e.from] + c + rank[i]);
    }
  }
  std::vector<NodeId> by_rank(static_cast<size_t>(n));
  std::iota(by_rank.begin(), by_rank.end(), 0);
  std::stable_sort(by_rank.begin(), by_rank.end(), [&](NodeId a, NodeId b) { return rank[a] > rank[b]; });
  BranchSchedule out;
  out.device_of.assign(static_cast<size_t>(n), 0);
  out.order.assign(static_cast<size_t>(k), {});
  std::vector<double> finish(static_cast<size_t>(n), 0.0), avail(static_cast<size_t>(k), 0.0);
  for (NodeId i : by_rank) {
    int best = 0;
    double best_end = 0;
    for (int d = 0; d < k; ++d) {
      double ready = avail[d];
      for (const Edge& e : edges[static_cast<size_t>(i)]) {
        ready =
            std::max(ready, finish[e.from] +
                                (e.order_only ? 0.0 : comm(out.device_of[e.from], d, e.bytes_per_sample)));
      }
      const double end = ready + w[d][i];
      if (d == 0 || end < best_end) {
        best = d;
        best_end = end;
      }
    }
    out.device_of[i] = best;
    out.order[best].push_back(i);
    finish[i] = best_end;
    avail[best] = best_end;
    out.makespan = std::max(out.makespan, Seconds(best_end));
  }
  return out;
}

std::vector<Plan> branch_candidates(const StageModel& model) {
  // The branch runner refuses a model whose nodes must see a write made through another value.
  if (first_read_seeing_a_write(model.graph()) != kNoNode) return {};
  std::vector<int> devices(static_cast<size_t>(model.num_devices()));
  std::iota(devices.begin(), devices.end(), 0);
  std::stable_sort(devices.begin(), devices.end(), [&](int a, int b) {
    return model.sample_time(model.spec_of(a)) < model.sample_time(model.spec_of(b));
  });
  if (static_cast<int>(devices.size()) > kBranchMaxDevices) devices.resize(kBranchMaxDevices);
  const std::vector<int> fastest{devices.front()};
  std::sort(devices.begin(), devices.end());
  struct Scored {
    Seconds estimate;
    Plan plan;
  };
  std::vector<Scored> scored;
  for (int m : microbatch_candidates(model.options(), 1)) {
    if (m > 8 || (m & (m - 1)) != 0) continue;
    const int mb = model.options().global_batch / m;
    // HEFT is greedy: it may split branches whose join then waits on a slow transfer. Keep the whole graph on
    // the fastest device when that finishes earlier.
    BranchSchedule sched = heft_schedule(model, devices, mb);
    BranchSchedule alone = heft_schedule(model, fastest, mb);
    if (alone.makespan < sched.makespan) {
      sched.device_of.assign(sched.device_of.size(), 0);
      sched.order.assign(devices.size(), {});
      const auto at = std::find(devices.begin(), devices.end(), fastest[0]) - devices.begin();
      sched.order[static_cast<size_t>(at)] = std::move(alone.order[0]);
      sched.makespan = alone.makespan;
    }
    Plan plan = empty_plan(model, StrategyKind::kBranch);
    plan.microbatches = m;
    plan.schedule = Schedule::kGPipe;  // all forwards, then all backwards (see simulate_branch.h)
    for (size_t d = 0; d < devices.size(); ++d) {
      const auto& nodes = sched.order[d];
      if (nodes.empty()) continue;
      plan.groups.push_back(DeviceGroup{
          {model.cluster().devices[static_cast<size_t>(devices[d])].id}, {mb}, GroupParallelism::kData});
      Stage st;
      st.nodes = nodes;
      st.first = *std::min_element(nodes.begin(), nodes.end());
      st.last = *std::max_element(nodes.begin(), nodes.end());
      st.group = static_cast<int>(plan.groups.size()) - 1;
      plan.stages.push_back(std::move(st));
    }
    mark_unused_devices(plan, model.cluster(), "HEFT found no node that finishes earlier on it");
    // HEFT's estimate is for one microbatch; microbatches overlap at best across devices.
    scored.push_back(Scored{sched.makespan * static_cast<double>(m), std::move(plan)});
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const Scored& a, const Scored& b) { return a.estimate < b.estimate; });
  std::vector<Plan> out;
  for (auto& s : scored) out.push_back(std::move(s.plan));
  return out;
}

}  // namespace partita

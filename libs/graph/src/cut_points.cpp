#include <algorithm>
#include <cmath>
#include <set>

#include "partita/core/error.h"
#include "partita/graph/analysis.h"

namespace partita {

namespace {

// Where each crossing-candidate value lives in topological order: it crosses cuts start .. last-1.
struct Lifetime {
  ValueId value;
  int start;  // max(producer position, 0); user inputs start at 0
  int last;   // position of the last user
};

struct CutData {
  std::vector<NodeId> order;
  std::vector<Lifetime> lifetimes;
  std::vector<Flops> flops_before;  // per position, inclusive
};

bool stage_local(ValueRole role) {
  return role == ValueRole::kParameter || role == ValueRole::kBuffer || role == ValueRole::kConstant;
}

CutData analyze(const Graph& graph) {
  CutData d;
  d.order = topological_order(graph);
  std::vector<int> pos(d.order.size());
  for (size_t i = 0; i < d.order.size(); ++i) pos[d.order[i]] = static_cast<int>(i);
  for (const auto& v : graph.values()) {
    if (stage_local(v.role) || v.users.empty()) continue;
    int last = -1;
    for (NodeId u : v.users) last = std::max(last, pos[u]);
    const int start = v.producer == kNoNode ? 0 : pos[v.producer];
    if (start < last) d.lifetimes.push_back(Lifetime{v.id, start, last});
  }
  Flops running(0);
  for (NodeId n : d.order) {
    running += graph.node(n).cost.flops;
    d.flops_before.push_back(running);
  }
  return d;
}

// Difference array over cuts: O(N + V).
std::vector<Bytes> bytes_per_cut(const Graph& graph, const CutData& d) {
  const size_t cuts = d.order.empty() ? 0 : d.order.size() - 1;
  std::vector<int64_t> diff(cuts + 1, 0);
  for (const auto& l : d.lifetimes) {
    diff[l.start] += graph.value(l.value).bytes().value();
    diff[l.last] -= graph.value(l.value).bytes().value();
  }
  std::vector<Bytes> out;
  int64_t running = 0;
  for (size_t c = 0; c < cuts; ++c) out.push_back(Bytes(running += diff[c]));
  return out;
}

// CutPoints at the given increasing positions: one sweep with a live set, copying only where asked.
std::vector<CutPoint> materialize(const Graph& graph, const CutData& d, const std::vector<int>& positions) {
  const size_t n = d.order.size();
  std::vector<std::vector<ValueId>> starts(n), ends(n);
  for (const auto& l : d.lifetimes) {
    starts[l.start].push_back(l.value);
    ends[l.last].push_back(l.value);
  }
  std::vector<CutPoint> out;
  std::set<ValueId> live;
  Bytes live_bytes(0);
  size_t next = 0;
  for (int c = 0; c + 1 < static_cast<int>(n) && next < positions.size(); ++c) {
    for (ValueId v : starts[c]) {
      live.insert(v);
      live_bytes += graph.value(v).bytes();
    }
    for (ValueId v : ends[c]) {
      live.erase(v);
      live_bytes -= graph.value(v).bytes();
    }
    if (positions[next] != c) continue;
    out.push_back(CutPoint{c, d.order[c], {live.begin(), live.end()}, live_bytes, d.flops_before[c]});
    ++next;
  }
  return out;
}

}  // namespace

std::vector<Bytes> cut_bytes(const Graph& graph) { return bytes_per_cut(graph, analyze(graph)); }

std::vector<CutPoint> cut_points(const Graph& graph) {
  const CutData d = analyze(graph);
  std::vector<int> all(d.order.empty() ? 0 : d.order.size() - 1);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  return materialize(graph, d, all);
}

std::vector<CutPoint> best_cut_points(const Graph& graph, int k, double balance_tolerance) {
  const CutData d = analyze(graph);
  const int cuts = d.order.empty() ? 0 : static_cast<int>(d.order.size()) - 1;
  PARTITA_CHECK(k >= 0 && k <= cuts, "best_cut_points: k = ", k, " cuts asked for, but a graph of ",
                d.order.size(), " nodes has ", cuts, " (use fewer stages)");
  PARTITA_CHECK(balance_tolerance > 0 && balance_tolerance <= 0.5, "best_cut_points: balance_tolerance ",
                balance_tolerance, " must be in (0, 0.5]");
  const std::vector<Bytes> bytes = bytes_per_cut(graph, d);
  // Work before each cut: FLOPs, or node counts when the graph carries no FLOPs.
  const bool by_count = d.flops_before.empty() || d.flops_before.back().value() <= 0;
  std::vector<double> work(cuts);
  for (int c = 0; c < cuts; ++c) work[c] = by_count ? c + 1.0 : d.flops_before[c].value();
  const double total = by_count ? static_cast<double>(d.order.size()) : d.flops_before.back().value();
  std::vector<bool> used(cuts, false);
  std::vector<int> chosen;
  for (int j = 1; j <= k; ++j) {
    const double target = total * j / (k + 1);
    const double half = total * balance_tolerance / (k + 1);
    const auto lo = std::lower_bound(work.begin(), work.end(), target - half) - work.begin();
    const auto hi = std::upper_bound(work.begin(), work.end(), target + half) - work.begin();
    int best = -1;
    auto better = [&](int c, int b) {
      if (b == -1) return true;
      if (bytes[c] != bytes[b]) return bytes[c] < bytes[b];
      return std::abs(work[c] - target) < std::abs(work[b] - target);
    };
    for (auto c = lo; c < hi; ++c) {
      if (!used[c] && better(static_cast<int>(c), best)) best = static_cast<int>(c);
    }
    if (best == -1) {  // no cut in the window: the unused cut nearest the even split (outward from lo)
      auto down = static_cast<int>(lo) - 1, up = static_cast<int>(lo);
      while (down >= 0 && used[down]) --down;
      while (up < cuts && used[up]) ++up;
      if (up >= cuts || (down >= 0 && target - work[down] <= work[up] - target)) {
        best = down;
      } else {
        best = up;
      }
    }
    used[best] = true;
    chosen.push_back(best);
  }
  std::sort(chosen.begin(), chosen.end());
  return materialize(graph, d, chosen);
}

}  // namespace partita

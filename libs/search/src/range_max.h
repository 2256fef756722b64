#pragma once
// Range maxima over node order in O(1) after O(n log n) set-up (a sparse table): the stage and tensor models'
// peaks of a node range. Internal to the search library.
#include <algorithm>
#include <bit>
#include <vector>

#include "partita/cost/memory.h"
#include "partita/graph/graph.h"

namespace partita::detail {

// Row k holds the maxima of windows of 2^k entries.
inline std::vector<std::vector<double>> sparse_max_table(std::vector<double> row) {
  std::vector<std::vector<double>> table;
  const size_t n = row.size();
  table.push_back(std::move(row));
  for (size_t k = 1; (size_t{1} << k) <= n; ++k) {
    const auto& prev = table.back();
    std::vector<double> next(n - (size_t{1} << k) + 1);
    for (size_t i = 0; i < next.size(); ++i) next[i] = std::max(prev[i], prev[i + (size_t{1} << (k - 1))]);
    table.push_back(std::move(next));
  }
  return table;
}

// The largest entry of [first, last] (first <= last, both inside the table's row).
inline double range_max(const std::vector<std::vector<double>>& table, NodeId first, NodeId last) {
  const int k = std::bit_width(static_cast<unsigned>(last - first + 1)) - 1;
  const auto& row = table[static_cast<size_t>(k)];
  return std::max(row[static_cast<size_t>(first)], row[static_cast<size_t>(last - (1 << k) + 1)]);
}

// The most, over the kernels of `scratch` (ascending by node) inside [first, last], of alive(node) (the bytes
// alive while the node runs on `samples` samples) plus the kernel's working memory for `samples` of the
// graph's `graph_batch` samples on `site` (`bytes`: kernel_scratch_bytes in inference,
// training_kernel_scratch_bytes in a training forward); 0 if none.
template <class Alive>
double kernel_peak(const std::vector<KernelScratch>& scratch, NodeId first, NodeId last, double samples,
                   double graph_batch, const KernelSite& site, Alive alive,
                   double (*bytes)(const KernelScratch&, double, const KernelSite&) = kernel_scratch_bytes) {
  double peak = 0;
  auto k = std::lower_bound(scratch.begin(), scratch.end(), first,
                            [](const KernelScratch& e, NodeId n) { return e.node < n; });
  for (; k != scratch.end() && k->node <= last; ++k)
    peak = std::max(peak, alive(k->node) + bytes(*k, samples / graph_batch, site));
  return peak;
}

}  // namespace partita::detail

#include "partita/search/blocks.h"

#include <algorithm>
#include <numeric>

namespace partita {

std::vector<NodeId> block_ends(const StageModel& model, int max_blocks) {
  const int n = model.num_nodes();
  std::vector<NodeId> ends;
  if (n <= max_blocks) {
    ends.resize(static_cast<size_t>(n));
    std::iota(ends.begin(), ends.end(), 0);
    return ends;
  }
  // Cut where the fewest bytes cross: the (max_blocks - 1) smallest crossings set a threshold; when more
  // positions tie under it (every layer boundary of a transformer), take evenly spaced ones among them so
  // blocks stay balanced instead of crowding at the front.
  const int want = std::max(0, max_blocks - 1);
  std::vector<double> crossing(static_cast<size_t>(n - 1));
  for (int i = 0; i + 1 < n; ++i)
    crossing[static_cast<size_t>(i)] = model.boundary(i).at(model.graph_batch());  // at the graph batch
  std::vector<NodeId> cuts;
  if (want > 0) {
    auto sorted = crossing;
    std::nth_element(sorted.begin(), sorted.begin() + (want - 1), sorted.end());
    const double threshold = sorted[static_cast<size_t>(want - 1)];
    std::vector<NodeId> tied;
    for (int i = 0; i + 1 < n; ++i) {
      if (crossing[static_cast<size_t>(i)] < threshold) cuts.push_back(i);
      if (crossing[static_cast<size_t>(i)] == threshold) tied.push_back(i);
    }
    const int64_t fill = want - static_cast<int64_t>(cuts.size());
    for (int64_t k = 0; k < fill; ++k) {
      cuts.push_back(tied[static_cast<size_t>((k * static_cast<int64_t>(tied.size())) / fill)]);
    }
    std::sort(cuts.begin(), cuts.end());
  }
  cuts.push_back(n - 1);
  return cuts;
}

std::vector<NodeId> allowed_block_ends(const std::vector<NodeId>& ends, const std::vector<bool>& allowed) {
  std::vector<NodeId> kept;
  for (size_t i = 0; i < ends.size(); ++i) {
    if (i + 1 == ends.size() || allowed[static_cast<size_t>(ends[i])]) kept.push_back(ends[i]);
  }
  return kept;
}

}  // namespace partita

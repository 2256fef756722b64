#pragma once
// Coarse blocks: the node order grouped into at most `max_blocks` contiguous blocks, cut where the fewest
// bytes cross (between transformer layers / residual blocks), so partitioning DPs run over blocks, not
// thousands of nodes. With max_blocks >= nodes every node is its own block and the partition is exact.
#include <vector>

#include "partita/search/stage_model.h"

namespace partita {

// The last node of each block, ascending; the final entry is num_nodes - 1.
std::vector<NodeId> block_ends(const StageModel& model, int max_blocks);

// The block ends after which `allowed[node]` permits a cut, and always the final one: fewer, larger blocks
// (hybrid plans cut only where graph/analysis.h's hybrid_cuts allows).
std::vector<NodeId> allowed_block_ends(const std::vector<NodeId>& ends, const std::vector<bool>& allowed);

}  // namespace partita

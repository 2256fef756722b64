#pragma once
// Which values cross which stage boundary. Torch-free.
#include <vector>

#include "partita/graph/graph.h"
#include "partita/search/plan.h"

namespace partita {

struct StageRouting {
  // sends[p][t]: values produced in stage p and needed by stage t > p (by a node of t, or because t is the
  // last stage and the value is a graph output), in value-id order. User inputs, parameters and constants are
  // available to every stage and never sent.
  std::vector<std::vector<std::vector<ValueId>>> sends;
  // mutated[t]: values that a node of stage t updates in place (an op ending in '_' taking it first); a
  // received value must then be copied, not shared.
  std::vector<std::vector<bool>> mutated;
  std::vector<int> stage_of_node;
  // [value] graph/analysis.h's batch_major and hybrid_crossable: between stages on groups of devices
  // (hybrid plans) a batch-major value travels as the samples each device of the receiving group holds, any
  // other crossable value whole from the sending group's first device; the rest cannot cross such a cut.
  std::vector<bool> batch_major, hybrid_crossable;
};

StageRouting route_stages(const Graph& graph, const Plan& plan);

}  // namespace partita

#pragma once
// Which values cross which stage boundary. Torch-free.
#include <optional>
#include <vector>

#include "partita/graph/graph.h"
#include "partita/search/plan.h"

namespace partita {

struct StageRouting {
  // sends[p][t]: values produced in stage p and needed by stage t > p (by a node of t, or because t is the
  // last stage and the value is a graph output), in value-id order. User inputs, parameters and constants are
  // available to every stage and not sent, except a user input that stage p updates in place (directly or
  // through a view), which goes to the later stages that read it. A value sharing storage that a stage
  // between its producer and a reader writes in place comes from the last such stage instead.
  std::vector<std::vector<std::vector<ValueId>>> sends;
  // mutated[t]: values that a node of stage t updates in place (an op ending in '_' taking it, or any value
  // sharing its storage, first: graph/analysis.h's storage_roots); a received value must then be copied, not
  // shared.
  std::vector<std::vector<bool>> mutated;
  std::vector<int> stage_of_node;
  // [value] graph/analysis.h's storage_roots: the value whose storage a view shares.
  std::vector<ValueId> storage_root;
  // A stage that writes a storage in place (graph/analysis.h's written_storages) while it would hold two or
  // more of its values as separate copies (copies_across_cut at the stage's start: values received apart, or
  // a received view beside the stage's own copy of a user input): the write would reach one copy, and the
  // stage's later readers of the others would miss it. The engine refuses such a plan; storage_write_cuts
  // keeps the planner from making one.
  struct SplitStorageWrite {
    int writer_stage = -1;
    NodeId write = kNoNode;  // the stage's first write into the storage
    std::vector<ValueId> copies;
  };
  std::optional<SplitStorageWrite> split_storage_write;
  // [value] graph/analysis.h's batch_major and hybrid_crossable: between stages on groups of devices
  // (hybrid plans) a batch-major value travels as the samples each device of the receiving group holds, any
  // other crossable value whole from the sending group's first device; the rest cannot cross such a cut.
  std::vector<bool> batch_major, hybrid_crossable;
};

StageRouting route_stages(const Graph& graph, const Plan& plan);

}  // namespace partita

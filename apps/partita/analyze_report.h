#pragma once
// The content of `partita analyze`: computed once, printed as text and as JSON.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "partita/core/json_io.h"
#include "partita/graph/analysis.h"
#include "partita/graph/graph.h"
#include "partita/torch_bridge/batch_check.h"

namespace partita::app {

struct OpSummary {
  std::string op;
  int count = 0;
  Flops flops{0};
};

struct AnalysisReport {
  int64_t params = 0;           // trainable parameter elements
  int64_t buffer_elements = 0;  // non-trainable state (batch-norm statistics)
  Bytes param_bytes{0};
  Flops flops{0};             // forward
  Bytes activation_bytes{0};  // all intermediate tensors of one forward (what training keeps at most)
  int compute_nodes = 0;      // nodes that are not structural
  std::vector<OpSummary> top_ops;
  std::vector<std::string> no_estimate;
  BatchCheckResult batch;
  CriticalPath critical;               // by FLOPs (Seconds field holds FLOPs: a unit-free work measure here)
  std::vector<BranchRegion> branches;  // regions with >= 2 non-trivial branches
  std::vector<CutPoint> cuts;
  std::vector<NodeParallelism> inference;  // static parallelizability per node
  std::vector<NodeId> unsafe_in_training;  // batch-splittable in inference but not in training (batch norm)
  int tensor_parallel_candidates = 0;
  // What tensor parallelism splits (search/tensor_model.h's roles) and whether partita run can split it over
  // 2, 4 and 8 devices (the engine's refusal, naming the node, where it cannot).
  int column_splits = 0, row_splits = 0, vocabulary_splits = 0;
  std::vector<std::pair<int, std::optional<std::string>>> tensor_degrees;
  // The keys of the dict forward() returns, whose values partita handles as a tuple in this order
  // (LoadedModel::output_keys); empty when it returns no dict.
  std::vector<std::string> output_keys;
};

AnalysisReport make_analysis_report(const Graph& graph, BatchCheckResult batch, int cuts);
std::string report_to_text(const Graph& graph, const AnalysisReport& report, const std::string& model);
Json report_to_json(const Graph& graph, const AnalysisReport& report);

}  // namespace partita::app

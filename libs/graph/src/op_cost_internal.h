#pragma once
// Shared helpers of op_cost.cpp (op table, simple ops) and op_cost_compute.cpp (ops with shape formulas).
#include <optional>
#include <string_view>

#include "partita/graph/graph.h"

namespace partita::op_cost_detail {

// The TensorMeta of a node's i-th input / output, or nullptr when absent or not a single tensor.
const TensorMeta* input_meta(const Graph& g, const Node& n, size_t i);
const TensorMeta* output_meta(const Graph& g, const Node& n, size_t i = 0);
double numel(const TensorMeta& t);
// A kEstimated cost with the given flops and the default byte convention (inputs read, outputs written).
OpCost estimated(const Graph& g, const Node& n, double flops);

// Ops with a shape formula (matmul family, convolution, attention, einsum, pooling, normalization, softmax,
// embedding). std::nullopt when the shapes needed are unknown.
using Handler = std::optional<OpCost> (*)(const Graph&, const Node&);
// nullptr when `op` (with any in-place underscore already removed) has no formula here.
Handler find_compute_handler(std::string_view op);

}  // namespace partita::op_cost_detail

#pragma once
// Analytic FLOP and byte estimates per node, from the op name, the input/output TensorMeta shapes and the
// constant arguments (TorchScript argument order, as torch 1.13 traced graphs print them).
//
// Conventions (shared with the cost models):
//  - flops: 2 per multiply-add; 1 per output element for plain elementwise ops, with these documented
//    per-element counts for transcendental ones: gelu 8, silu 8, mish 10, sigmoid 4, tanh 4, softplus 4,
//    elu/selu/celu 3, hardswish 3, hardsigmoid 2; softmax/log_softmax 5 per element (max, sub, exp, sum,
//    div); batch_norm in eval mode 4 per element (sub mean, scale, affine mul+add) and 8 when it computes
//    statistics (training=True); layer/group/instance norm 8 per element (mean 1, variance 3, normalize 2,
//    affine 2); reductions 1 per input element; pooling out_numel * kernel area, adaptive pooling
//    input_numel; scaled_dot_product_attention 2*B*L*S*(E+Ev) (the two matmuls; the softmax is left out).
//  - bytes_read: sum of the input tensors' bytes (parameters included, scalars/constants 0);
//    bytes_written: sum of the output tensors' bytes. Embedding reads the gathered rows, not the table.
//  - structural ops (list/tuple packing, shape queries, view-like ops, eval-mode dropout, same-dtype `to`)
//  cost
//    0 with status kStructural; copies (cat, stack, contiguous, clone...) cost bytes, 0 flops, kEstimated.
//  - an op without a formula, or with a formula but missing shapes, gets kNoEstimate with zero cost: never a
//    silent zero that claims to be an estimate.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "partita/graph/graph.h"

namespace partita {

// The cost of one node (does not modify the graph).
OpCost estimate_cost(const Graph& graph, NodeId node);
// Fills Node::cost for every node.
void estimate_costs(Graph& graph);
// Distinct op names of nodes whose cost status is kNoEstimate, sorted by name.
std::vector<std::string> ops_without_estimate(const Graph& graph);

// Kernel calls (OpCost::kernel_calls) of a recurrent layer, op "aten::lstm", "aten::gru", "aten::rnn_tanh" or
// "aten::rnn_relu", over `steps` time steps and `layer_directions` layers x directions. LibTorch runs the
// cell step by step: per step, layer and direction an LSTM makes 11 calls, a GRU 12, an Elman RNN 3 (counted
// with LibTorch's profiler: the hidden linear, the gate adds, activations and products), plus the input
// projection of the whole sequence and the stacking of the outputs per layer and direction. Throws
// partita::Error for any other op.
int64_t recurrent_kernel_calls(std::string_view op, int64_t steps, int64_t layer_directions);

// A recurrent layer node (aten::lstm, gru, rnn_tanh, rnn_relu; schemas .input(input, hx, params,
// has_biases, num_layers, dropout, train, bidirectional, batch_first) and the packed .data(data,
// batch_sizes, hx, params, ...)) as its input and weights give it.
struct RecurrentLayout {
  int64_t steps = 0;   // time steps: the input's first dim, its second when batch_first, a packed sequence's
                       // batch_sizes length
  double tokens = 0;   // time steps x batch (a packed sequence: its tokens)
  int64_t gates = 1;   // weight rows per hidden unit: LSTM 4, GRU 3, Elman 1
  int64_t hidden = 0;  // units per layer and direction
  int64_t layers = 1;
  int64_t directions = 1;
  bool projections = false;  // an LSTM with proj_size (three matrices per layer and direction)
  std::vector<TensorMeta>
      weights;  // the params list, per layer and direction W_ih, W_hh[, b_ih, b_hh][, W_hr]
  int64_t layer_directions() const { return layers * directions; }
};
// nullopt when the node is not one of those ops, a shape or flag is unknown, or the weights are not the list
// these ops take.
std::optional<RecurrentLayout> recurrent_layout(const Graph& graph, const Node& node);

}  // namespace partita

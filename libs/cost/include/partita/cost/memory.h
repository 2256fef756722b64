#pragma once
// Memory cost model: bytes a device needs to hold a node range [first, last] (a pipeline stage, or the whole
// graph) for inference or training.
// Assumptions:
//   - parameters: the tensors of graph parameters used as inputs by nodes in the range (counted once each);
//     gradients: the same size for trainable ones when training (fp32 master copies are not modelled).
//   - optimizer state: optimizer_state_bytes(trainable parameter bytes) (fp32 state of the parameters'
//   dtype).
//   - activations: saved_activation_bytes per microbatch, times microbatches_in_flight (1F1B keeps up to the
//     number of stages in flight; GPipe keeps all), scaled by batch_fraction (data parallel share of the
//     batch). For inference only the live working set matters: the largest single node's inputs + outputs.
//   - workspace: the largest single node's inputs + outputs in the range (temporary buffers of one op).
// All functions are pure and thread-safe.
#include <string_view>

#include "partita/core/units.h"
#include "partita/graph/graph.h"

namespace partita {

enum class Optimizer { kSgd, kSgdMomentum, kAdam, kAdamW };

// Optimizer state for `params` bytes of trainable parameters: SGD 0, SGD with momentum 1x (momentum buffer),
// Adam/AdamW 2x (first and second moments).
Bytes optimizer_state_bytes(Bytes params, Optimizer optimizer);
// "sgd", "sgd_momentum", "adam", "adamw"; parse_optimizer throws partita::Error naming the accepted
// spellings.
std::string_view optimizer_name(Optimizer optimizer);
Optimizer parse_optimizer(std::string_view name);

// Memory of one device, by component, in bytes.
struct MemoryEstimate {
  Bytes parameters{0};
  Bytes gradients{0};
  Bytes optimizer_state{0};
  Bytes activations{0};
  Bytes workspace{0};
  Bytes total() const { return parameters + gradients + optimizer_state + activations + workspace; }
};

// Bytes of tensors that backward needs from the forward pass of nodes [first, last] (inclusive, one
// microbatch). Approximation: the floating-point tensor outputs of non-structural nodes in the range (views
// alias their input and save nothing new), plus the floating-point tensor inputs of the range that come from
// outside it (user inputs or earlier nodes; parameters and constants excluded), each value counted once. Ops
// that need only their output (ReLU) or nothing (add) save less in reality, so this is an upper-side
// estimate.
Bytes saved_activation_bytes(const Graph& graph, NodeId first, NodeId last);

// Bytes of the parameters (trainable and buffers) read by nodes in [first, last]; trainable_only excludes
// buffers.
Bytes range_parameter_bytes(const Graph& graph, NodeId first, NodeId last, bool trainable_only);

// Estimate for nodes [first, last] (see the model above). batch_fraction in (0, 1] scales activations and
// workspace (a data-parallel replica with a quarter of the batch: 0.25). Throws partita::Error for a bad
// range, microbatches_in_flight < 1 or batch_fraction outside (0, 1].
MemoryEstimate estimate_memory(const Graph& graph, NodeId first, NodeId last, bool training,
                               Optimizer optimizer, int microbatches_in_flight, double batch_fraction);

}  // namespace partita

#include "partita/cost/memory.h"

#include <algorithm>
#include <vector>

#include "partita/core/error.h"
#include "partita/cost/compute.h"

namespace partita {

namespace {

void check_range(const Graph& graph, NodeId first, NodeId last) {
  PARTITA_CHECK(first >= 0 && first <= last && last < graph.num_nodes(), "node range [", first, ", ", last,
                "] is not inside the graph's ", graph.num_nodes(), " nodes (ids 0..", graph.num_nodes() - 1,
                ")");
}

Bytes floating_bytes(const Value& v) {
  Bytes b(0);
  for (const auto& t : v.tensors) {
    if (is_floating(t.dtype)) b += t.bytes();
  }
  return b;
}

bool is_weight_or_constant(const Value& v) {
  return v.role == ValueRole::kParameter || v.role == ValueRole::kBuffer || v.role == ValueRole::kConstant;
}

// Floating tensors that enter [first, last] from outside it (user inputs or earlier nodes), each once.
Bytes range_input_bytes(const Graph& graph, NodeId first, NodeId last, std::vector<bool>& seen) {
  Bytes b(0);
  for (NodeId n = first; n <= last; ++n) {
    for (ValueId id : graph.node(n).inputs) {
      const Value& v = graph.value(id);
      if (seen[static_cast<size_t>(id)] || is_weight_or_constant(v)) continue;
      if (v.producer != kNoNode && v.producer >= first) continue;  // produced inside the range
      seen[static_cast<size_t>(id)] = true;
      b += floating_bytes(v);
    }
  }
  return b;
}

// The largest single node's non-weight inputs plus outputs: the working set of one op.
Bytes largest_node_io(const Graph& graph, NodeId first, NodeId last) {
  Bytes largest(0);
  for (NodeId n = first; n <= last; ++n) {
    const Node& node = graph.node(n);
    Bytes io(0);
    for (ValueId id : node.inputs) {
      if (!is_weight_or_constant(graph.value(id))) io += graph.value(id).bytes();
    }
    for (ValueId id : node.outputs) io += graph.value(id).bytes();
    largest = std::max(largest, io);
  }
  return largest;
}

}  // namespace

Bytes optimizer_state_bytes(Bytes params, Optimizer optimizer) {
  switch (optimizer) {
    case Optimizer::kSgd:
      return Bytes(0);
    case Optimizer::kSgdMomentum:
      return params;
    case Optimizer::kAdam:
    case Optimizer::kAdamW:
      break;
  }
  return params * 2.0;
}

std::string_view optimizer_name(Optimizer optimizer) {
  switch (optimizer) {
    case Optimizer::kSgd:
      return "sgd";
    case Optimizer::kSgdMomentum:
      return "sgd_momentum";
    case Optimizer::kAdam:
      return "adam";
    case Optimizer::kAdamW:
      break;
  }
  return "adamw";
}

Optimizer parse_optimizer(std::string_view name) {
  for (Optimizer o : {Optimizer::kSgd, Optimizer::kSgdMomentum, Optimizer::kAdam, Optimizer::kAdamW}) {
    if (optimizer_name(o) == name) return o;
  }
  PARTITA_FAIL("unknown optimizer '", name, "': use sgd, sgd_momentum, adam or adamw");
}

Bytes saved_activation_bytes(const Graph& graph, NodeId first, NodeId last) {
  check_range(graph, first, last);
  std::vector<bool> seen(static_cast<size_t>(graph.num_values()), false);
  Bytes b = range_input_bytes(graph, first, last, seen);
  for (NodeId n = first; n <= last; ++n) {
    const Node& node = graph.node(n);
    if (classify_op(node) == OpClass::kStructural) continue;  // views alias what is already counted
    for (ValueId id : node.outputs) {
      if (seen[static_cast<size_t>(id)]) continue;
      seen[static_cast<size_t>(id)] = true;
      b += floating_bytes(graph.value(id));
    }
  }
  return b;
}

Bytes range_parameter_bytes(const Graph& graph, NodeId first, NodeId last, bool trainable_only) {
  check_range(graph, first, last);
  std::vector<bool> seen(static_cast<size_t>(graph.num_values()), false);
  Bytes b(0);
  for (NodeId n = first; n <= last; ++n) {
    for (ValueId id : graph.node(n).inputs) {
      const Value& v = graph.value(id);
      const bool counted =
          v.role == ValueRole::kParameter || (!trainable_only && v.role == ValueRole::kBuffer);
      if (!counted || seen[static_cast<size_t>(id)]) continue;
      seen[static_cast<size_t>(id)] = true;
      b += v.bytes();
    }
  }
  return b;
}

MemoryEstimate estimate_memory(const Graph& graph, NodeId first, NodeId last, bool training,
                               Optimizer optimizer, int microbatches_in_flight, double batch_fraction) {
  check_range(graph, first, last);
  PARTITA_CHECK(microbatches_in_flight >= 1, "estimate_memory: microbatches_in_flight is ",
                microbatches_in_flight, "; it must be at least 1");
  PARTITA_CHECK(batch_fraction > 0 && batch_fraction <= 1, "estimate_memory: batch_fraction is ",
                batch_fraction, "; it must be in (0, 1]");
  MemoryEstimate m;
  m.parameters = range_parameter_bytes(graph, first, last, /*trainable_only=*/false);
  const double per_device = batch_fraction * microbatches_in_flight;
  if (training) {
    const Bytes trainable = range_parameter_bytes(graph, first, last, /*trainable_only=*/true);
    m.gradients = trainable;
    m.optimizer_state = optimizer_state_bytes(trainable, optimizer);
    m.activations = saved_activation_bytes(graph, first, last) * per_device;
  } else {
    // Inference keeps only each in-flight microbatch's input to the range; the rest is the op working set.
    std::vector<bool> seen(static_cast<size_t>(graph.num_values()), false);
    m.activations = range_input_bytes(graph, first, last, seen) * per_device;
  }
  m.workspace = largest_node_io(graph, first, last) * batch_fraction;
  return m;
}

}  // namespace partita

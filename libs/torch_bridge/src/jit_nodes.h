#pragma once
// Walks of TorchScript graphs shared by the importer's passes.
#include <vector>

#include <torch/csrc/jit/ir/ir.h>

namespace partita::detail {

// Every node of `block` and of the blocks nested in its nodes (an If's branches, a Loop's body), each before
// the nodes of its own blocks. Collected first, so the caller may change or destroy nodes as it goes through
// them (not a node whose blocks hold nodes still to come).
inline std::vector<torch::jit::Node*> nodes_within(torch::jit::Block* block) {
  std::vector<torch::jit::Node*> nodes;
  std::vector<torch::jit::Block*> blocks{block};
  while (!blocks.empty()) {
    torch::jit::Block* b = blocks.back();
    blocks.pop_back();
    for (torch::jit::Node* n : b->nodes()) {
      nodes.push_back(n);
      for (torch::jit::Block* inner : n->blocks()) blocks.push_back(inner);
    }
  }
  return nodes;
}

// The mark the importer puts on a node a scripted forward() runs inside `with torch.no_grad():`; the executor
// runs a marked node with grad mode off, as the interpreter does.
inline const c10::Symbol& no_grad_mark() {
  static const c10::Symbol symbol = c10::Symbol::attr("partita_no_grad");
  return symbol;
}

}  // namespace partita::detail

#include "backward_from.h"

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/variable.h>

#include "partita/core/error.h"

namespace partita::detail {

void backward_from(std::vector<torch::Tensor>& roots, std::vector<torch::Tensor> grads) {
  PARTITA_ASSERT(roots.size() == grads.size(), roots.size(), " roots but ", grads.size(), " gradients");
  torch::autograd::edge_list edges;
  edges.reserve(roots.size());
  for (const torch::Tensor& t : roots) {
    PARTITA_ASSERT(t.requires_grad(), "a root of backward that needs no gradient");
    edges.push_back(torch::autograd::impl::gradient_edge(t));
  }
  roots.clear();
  if (edges.empty()) return;
  torch::autograd::Engine::get_default_engine().execute(edges, grads, /*keep_graph=*/false,
                                                        /*create_graph=*/false, /*accumulate_grad=*/true);
}

}  // namespace partita::detail

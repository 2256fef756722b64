#include "backward_from.h"

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/variable.h>

#include "partita/core/error.h"

namespace partita::detail {

void backward_from(std::vector<torch::Tensor>& roots, std::vector<torch::Tensor> grads) {
  PARTITA_ASSERT(roots.size() == grads.size(), roots.size(), " roots but ", grads.size(), " gradients");
  torch::autograd::edge_list edges;
  edges.reserve(roots.size());
  for (size_t i = 0; i < roots.size(); ++i) {
    // As torch::autograd::backward refuses it (the runners report autograd's errors naming the stage).
    TORCH_CHECK(roots[i].requires_grad(), "element ", i,
                " of tensors does not require grad and does not have a grad_fn");
    edges.push_back(torch::autograd::impl::gradient_edge(roots[i]));
  }
  roots.clear();
  if (edges.empty()) return;
  torch::autograd::Engine::get_default_engine().execute(edges, grads, /*keep_graph=*/false,
                                                        /*create_graph=*/false, /*accumulate_grad=*/true);
}

}  // namespace partita::detail

#pragma once
// Memory cost model: bytes a device needs to hold a node range [first, last] (a pipeline stage, or the whole
// graph) for inference or training.
// Assumptions:
//   - parameters: the tensors of graph parameters used as inputs by nodes in the range (counted once each);
//     gradients: the same size for trainable ones when training (fp32 master copies are not modelled).
//   - optimizer state: optimizer_state_bytes(trainable parameter bytes) (fp32 state of the parameters'
//   dtype).
//   - training: autograd keeps only what backward needs (see saved_activation_bytes), and backward frees it
//     as it goes while parameter gradients appear, so the peak is found by walking the forward and then
//     backward node by node. At node n's forward: what nodes up to n saved, the other storages alive at n
//     and n's kernel working memory (training_kernel_scratch_bytes), no gradient yet. At n's backward: the
//     saved tensors of nodes <= n, the gradients of parameters read at or after n, and the
//     gradients in flight (of values live across n, and of n's inputs). The estimate reports the components
//     at that peak moment (so `gradients` can be less than all trainable bytes when the peak comes early in
//     backward). Inputs and results of the range stay live for the whole step. Other microbatches in flight
//     (1F1B keeps up to the number of stages; GPipe keeps all) hold all of theirs. Activations and gradients
//     in flight scale by batch_fraction (data parallel share of the batch).
//   - inference: only the live working set matters: the most bytes alive at once while a node of the range
//     runs in one forward of the whole graph (live_bytes_per_node), and at least the range's inputs.
// All functions are pure and thread-safe.
#include <string_view>
#include <vector>

#include "partita/core/units.h"
#include "partita/graph/graph.h"
#include "partita/graph/op_cost.h"

namespace partita {

enum class Optimizer { kSgd, kSgdMomentum, kAdam, kAdamW };

// Optimizer state for `params` bytes of trainable parameters: SGD 0, SGD with momentum 1x (momentum buffer),
// Adam/AdamW 2x (first and second moments).
Bytes optimizer_state_bytes(Bytes params, Optimizer optimizer);
// What LibTorch 1.13's optimizer step allocates beside the model state while it updates the largest
// parameter (`largest` bytes), one parameter at a time: Adam and AdamW compute the denominator
// sqrt(v) / sqrt(bias correction) out of place, two parameter-sized temporaries alive at once; SGD, with or
// without momentum, updates in place (no weight decay: partita's optimizers have none, AdamW's decoupled
// decay is in place). Measured: the MLP's two-replica training plan (32x64 on cpu:0 + cpu:1) peaks in its
// Adam step, 1.805 MiB against 1.797 predicted with two temporaries of its 256 KiB weight (1.432 without).
Bytes optimizer_step_temporaries(Bytes largest, Optimizer optimizer);
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
// microbatch), modelled after PyTorch's autograd: distinct storages (views and in-place results share their
// input's) saved by some node of the range that takes part in autograd (some input needs a gradient):
// linear/matmul/conv save each operand whose partner needs a gradient, norms their input, relu-like ops and
// softmax their output, gelu-like ops, pooling and unknown ops their inputs (max pooling also its int64
// indices); add/sub, views, copies, cat and embedding save nothing; parameters never count here. Plus the
// tensors entering the range and the range's results (live throughout).
Bytes saved_activation_bytes(const Graph& graph, NodeId first, NodeId last);

// Elements autograd keeps for a recurrent layer's backward beyond its input (LibTorch 1.13 on the CPU runs
// the cells step by step as ordinary ops): per token, layer and direction 7 x hidden for an LSTM or a GRU,
// and for an Elman RNN its output plus the state each sequence starts from ((tokens + batch) x hidden); and
// each layer above the first keeps its input, the layer below's output (directions x hidden per token).
// Measured by walking autograd's saved tensors after nn.LSTM, nn.GRU and nn.RNN forwards (1-2 layers, 1-2
// directions, 10-20 steps, batch 4-8, 8-24 features, hidden 16-32): exact for each. Not measured: LSTMs with
// projections (counted as without), packed sequences (counted by their tokens), CUDA's fused kernels.
double recurrent_saved_elements(const RecurrentLayout& layout);

// Elements a recurrent layer's forward holds beyond its input and output (LibTorch 1.13 on the CPU): each
// layer projects the whole sequence's input at once (gates x hidden per token), keeps each step's output
// until it stacks them, and the layer below's output while it runs; a bidirectional layer keeps the forward
// pass's outputs and their stack while the reverse pass runs, and concatenates the two stacks. At the
// largest layer, per token: hidden x (the layer below's directions, none for the first + gates + 1 for the
// last layer of one direction, 2 below it; 4 and 6 with two directions). Measured with partita's counting
// allocator (`estimate --measure`, the peak beyond the rest of the model) on traced nn.LSTM, nn.GRU and
// nn.RNN at 50 steps, batch 8, 8 features, hidden 32: 1 and 2 layers, one and both directions, within 3 KiB
// (the step's own temporaries) of this model's 150-500 KiB.
double recurrent_working_elements(const RecurrentLayout& layout);
// The same while a training forward runs, beyond what autograd keeps (recurrent_saved_elements): each step's
// output is saved there, and so is the layer below's output (the input of the layer above), so a layer holds
// only its projected sequence (gates x hidden per token) and, with two directions, each direction's stack of
// outputs until it concatenates them (2 x hidden per token). Measured with bench/recurrent_memory.sh
// (training): the whole step's peak within -1.8..+0.4% on the 50-step LSTM, GRU and Elman models above, 1 and
// 2 layers, 1 and 2 directions; -9.3..+3.2% on 20-step classifiers.
double recurrent_training_working_elements(const RecurrentLayout& layout);

// The same autograd model by storage, for sums over node ranges (the stage model's prefix sums).
struct SavedByProducer {
  // [node] bytes of the storages the node produces that some node saves for backward, plus the node's own
  // extra saved tensors (max pooling's indices). Graph inputs, parameters and constants have no producer.
  std::vector<Bytes> bytes;
  // [node] the part of `bytes` in storages that do not depend on the batch (graph/analysis.h's
  // batch_dependent: weights' math, shared inputs'): every replica and microbatch holds them whole.
  std::vector<Bytes> batch_free;
  std::vector<ValueId> root;  // [value] the value whose storage it is (itself unless a view/in-place result)
  std::vector<bool> saved;    // [value] its storage is saved by some node for backward
  // [value] a floating-point tensor computed from a trainable parameter: backward makes a gradient for it
  // (a user input, an integer tensor or what only they feed gets none).
  std::vector<bool> requires_grad;
};
SavedByProducer saved_activations_by_producer(const Graph& graph);

// Whether the gradients `node`'s backward hands its inputs are views of its output's gradient, so that it
// makes no new memory: concatenation (each input gets a slice), the views that only reshape (view,
// reshape, flatten, transpose, permute, (un)squeeze, ...), and an add (alpha 1) of tensors of the output's
// shape, which hands both inputs the output's gradient itself (a residual add; a merged weight W + A @ B,
// whose 4 MiB gradient was counted twice). Not slicing views (their backward scatters into a zeroed tensor
// of the input's size), expand or a broadcasting add (a sum), subtraction (a negation) or copies.
bool backward_makes_views(const Graph& graph, const Node& node);

// Storage lifetimes over one forward of the whole graph, by storage root (SavedByProducer::root): born at
// the producer (node 0 for graph inputs); dies at the last reader, or num_nodes() (past the last node) for a
// graph output, or -1 when nothing reads it (it lives while its producer runs). Weights, constants and
// values without tensors have born = -1; aliases have born = dies = -1 (their root carries the lifetime).
struct StorageLifetimes {
  std::vector<int> born, dies;  // [value]
};
StorageLifetimes storage_lifetimes(const Graph& graph, const std::vector<ValueId>& root);

// Inference: bytes alive while each node runs in one forward of the whole graph: every storage from birth to
// death (storage_lifetimes). Weights excluded; what a kernel takes beyond its inputs and outputs is
// kernel_scratch_bytes, added where the device is known.
std::vector<Bytes> live_bytes_per_node(const Graph& graph);
// The same with the storage roots already known (SavedByProducer::root), which saves building them again.
std::vector<Bytes> live_bytes_per_node(const Graph& graph, const std::vector<ValueId>& root);
// The same with each storage counted as share[root] of its bytes (one entry per value; a device of a
// tensor-parallel group holds 1/p of a split tensor): bytes alive while each node runs, as doubles.
std::vector<double> live_bytes_per_node(const Graph& graph, const std::vector<ValueId>& root,
                                        const std::vector<double>& share);

// Where a kernel runs, which decides the working memory it takes (kernel_scratch_bytes).
struct KernelSite {
  bool cpu = false;  // a CPU device; false: a GPU, or a device not known
  int threads = 1;   // a CPU device's intra-op threads
};

// What a node's kernel holds while it runs beyond its inputs and outputs, by the facts of the graph at its
// own batch; kernel_scratch_bytes turns them into bytes for a call on part of that batch on a site. The model
// is LibTorch 1.13's CPU kernels, each case measured with partita's counting allocator on one-op models
// (docs/status.md, "Working memory of convolutions and max pooling"):
//   - max pooling makes int64 argmax indices, one per output element, and drops them (GPU too);
//   - a convolution on a CPU runs in oneDNN unless LibTorch's heuristic picks its native kernel: native
//     when the call has one row, one group, a kernel of at most 3 in either of its last two dimensions and
//     at most 20,480 input elements; or, single-threaded, an unstrided undilated 1x1 kernel on fewer than
//     16 rows; or a non-float32 input. oneDNN reorders the weight and the input into its blocked layouts,
//     then the output back into the plain one: max(input + weight, output) beyond input and output. The
//     native kernel's column buffer holds input channels x kernel area x output positions per row (none for
//     an unstrided 1x1 kernel);
//   - elsewhere (a GPU, an unknown site, a transposed convolution) a convolution's workspace is taken as a
//     copy of its input and output (cuDNN's is of that order; not measured);
//   - a recurrent layer holds recurrent_working_elements, in a training forward
//     recurrent_training_working_elements (on any site; measured on the CPU only).
struct KernelScratch {
  NodeId node = kNoNode;
  bool convolution = false;       // else a max pooling or (recurrent > 0) a recurrent layer
  double recurrent = 0;           // a recurrent layer: its working bytes at the graph's batch
  double recurrent_training = 0;  // ... and while a training forward runs
  double indices = 0;             // max pooling: its int64 indices at the graph's batch
  double input = 0;               // convolution, at the graph's batch: input, output and native column bytes
  double output = 0;
  double columns = 0;
  double weight = 0;          // the weight, which does not scale with the batch
  double rows = 1;            // the call's rows (input dimension 0) at the graph's batch
  double input_elements = 0;  // at the graph's batch
  bool float32 = true;
  bool transposed = false;
  bool grouped = false;
  bool large_kernel = false;     // both of the weight's last two dimensions above 3
  bool plain_pointwise = false;  // a 1x1 kernel, unit stride and dilation
};
// One entry per convolution, max pooling and recurrent layer node, in node order.
std::vector<KernelScratch> kernel_scratch(const Graph& graph);
// Bytes `k` holds for a call on `fraction` of the graph's batch, on `site`: in inference, and in a training
// forward (which differs for recurrent layers only).
double kernel_scratch_bytes(const KernelScratch& k, double fraction, const KernelSite& site);
double training_kernel_scratch_bytes(const KernelScratch& k, double fraction, const KernelSite& site);
// What `k` holds while its backward runs, beyond its inputs, outputs, the gradients in flight (the
// gradient of its output and of its input) and its weight's gradient: a CPU convolution in oneDNN a copy of
// its input (one-convolution models trained on 8 rows, the input needing a gradient or not: 32 to 256 KiB
// over the prediction without it, each time the input's size), in the native kernel its column buffer,
// which it makes again for the weight's gradient (seen allocated beside that gradient in the 1-row calls
// of the same models; bench/conv_backward_memory.sh). Not modelled (0): transposed convolutions, GPUs, max
// pooling and recurrent layers.
double backward_kernel_scratch_bytes(const KernelScratch& k, double fraction, const KernelSite& site);

// Bytes of the parameters (trainable and buffers) read by nodes in [first, last]; trainable_only excludes
// buffers.
Bytes range_parameter_bytes(const Graph& graph, NodeId first, NodeId last, bool trainable_only);

// Estimate for nodes [first, last] (see the model above). batch_fraction in (0, 1] scales activations and
// workspace (a data-parallel replica with a quarter of the batch: 0.25); `site` is where inference runs (its
// kernels' working memory). Throws partita::Error for a bad range, microbatches_in_flight < 1 or
// batch_fraction outside (0, 1].
MemoryEstimate estimate_memory(const Graph& graph, NodeId first, NodeId last, bool training,
                               Optimizer optimizer, int microbatches_in_flight, double batch_fraction,
                               const KernelSite& site = {});

}  // namespace partita

// classify_op: op name tables. Kept apart from the roofline so the tables can grow without touching the
// model.
#include <array>
#include <string_view>

#include "partita/cost/compute.h"
#include "partita/graph/op_names.h"

namespace partita {

namespace {

struct OpClassEntry {
  std::string_view name;  // without the "aten::" prefix and without a trailing in-place '_'
  OpClass op_class;
};

constexpr std::array kOpTable = std::to_array<OpClassEntry>({
    // matmul
    {"linear", OpClass::kMatmul},
    {"matmul", OpClass::kMatmul},
    {"mm", OpClass::kMatmul},
    {"bmm", OpClass::kMatmul},
    {"addmm", OpClass::kMatmul},
    {"addbmm", OpClass::kMatmul},
    {"baddbmm", OpClass::kMatmul},
    {"einsum", OpClass::kMatmul},
    {"mv", OpClass::kMatmul},
    {"dot", OpClass::kMatmul},
    {"scaled_dot_product_attention", OpClass::kMatmul},
    // conv
    {"convolution", OpClass::kConv},
    {"_convolution", OpClass::kConv},
    {"conv1d", OpClass::kConv},
    {"conv2d", OpClass::kConv},
    {"conv3d", OpClass::kConv},
    {"conv_transpose1d", OpClass::kConv},
    {"conv_transpose2d", OpClass::kConv},
    {"conv_transpose3d", OpClass::kConv},
    {"mkldnn_convolution", OpClass::kConv},
    // norm
    {"batch_norm", OpClass::kNorm},
    {"native_batch_norm", OpClass::kNorm},
    {"layer_norm", OpClass::kNorm},
    {"native_layer_norm", OpClass::kNorm},
    {"group_norm", OpClass::kNorm},
    {"instance_norm", OpClass::kNorm},
    {"rms_norm", OpClass::kNorm},
    // reduction (incl. softmax and pooling: each output reads a window or a row)
    {"sum", OpClass::kReduction},
    {"mean", OpClass::kReduction},
    {"max", OpClass::kReduction},
    {"min", OpClass::kReduction},
    {"amax", OpClass::kReduction},
    {"amin", OpClass::kReduction},
    {"argmax", OpClass::kReduction},
    {"argmin", OpClass::kReduction},
    {"prod", OpClass::kReduction},
    {"var", OpClass::kReduction},
    {"std", OpClass::kReduction},
    {"norm", OpClass::kReduction},
    {"logsumexp", OpClass::kReduction},
    {"softmax", OpClass::kReduction},
    {"_softmax", OpClass::kReduction},
    {"log_softmax", OpClass::kReduction},
    {"cumsum", OpClass::kReduction},
    {"max_pool1d", OpClass::kReduction},
    {"max_pool2d", OpClass::kReduction},
    {"max_pool3d", OpClass::kReduction},
    {"avg_pool1d", OpClass::kReduction},
    {"avg_pool2d", OpClass::kReduction},
    {"avg_pool3d", OpClass::kReduction},
    {"adaptive_avg_pool1d", OpClass::kReduction},
    {"adaptive_avg_pool2d", OpClass::kReduction},
    {"adaptive_avg_pool3d", OpClass::kReduction},
    {"adaptive_max_pool2d", OpClass::kReduction},
    {"cross_entropy_loss", OpClass::kReduction},
    {"nll_loss", OpClass::kReduction},
    {"mse_loss", OpClass::kReduction},
    // memory: moves or materializes data without arithmetic
    {"cat", OpClass::kMemory},
    {"stack", OpClass::kMemory},
    {"contiguous", OpClass::kMemory},
    {"to", OpClass::kMemory},
    {"clone", OpClass::kMemory},
    {"copy", OpClass::kMemory},
    {"embedding", OpClass::kMemory},
    {"index_select", OpClass::kMemory},
    {"index", OpClass::kMemory},
    {"gather", OpClass::kMemory},
    {"scatter", OpClass::kMemory},
    {"pad", OpClass::kMemory},
    {"constant_pad_nd", OpClass::kMemory},
    {"repeat", OpClass::kMemory},
    {"roll", OpClass::kMemory},
    {"flip", OpClass::kMemory},
    {"zeros", OpClass::kMemory},
    {"ones", OpClass::kMemory},
    {"zeros_like", OpClass::kMemory},
    {"ones_like", OpClass::kMemory},
    {"full", OpClass::kMemory},
    {"arange", OpClass::kMemory},
    {"empty", OpClass::kMemory},
    {"channel_shuffle", OpClass::kMemory},
    // Rearrangements: every output element is one input element (op_cost.cpp counts them as copies).
    {"pixel_shuffle", OpClass::kMemory},
    {"pixel_unshuffle", OpClass::kMemory},
    {"upsample_nearest1d", OpClass::kMemory},
    {"upsample_nearest2d", OpClass::kMemory},
    {"upsample_nearest3d", OpClass::kMemory},
    {"reflection_pad1d", OpClass::kMemory},
    {"reflection_pad2d", OpClass::kMemory},
    {"reflection_pad3d", OpClass::kMemory},
    {"replication_pad1d", OpClass::kMemory},
    {"replication_pad2d", OpClass::kMemory},
    {"replication_pad3d", OpClass::kMemory},
    {"im2col", OpClass::kMemory},
    // structural: views and metadata
    {"view", OpClass::kStructural},
    {"reshape", OpClass::kStructural},
    {"flatten", OpClass::kStructural},
    {"unflatten", OpClass::kStructural},
    {"transpose", OpClass::kStructural},
    {"permute", OpClass::kStructural},
    {"t", OpClass::kStructural},
    {"size", OpClass::kStructural},
    {"slice", OpClass::kStructural},
    {"select", OpClass::kStructural},
    {"unsqueeze", OpClass::kStructural},
    {"squeeze", OpClass::kStructural},
    {"expand", OpClass::kStructural},
    {"expand_as", OpClass::kStructural},
    {"narrow", OpClass::kStructural},
    {"chunk", OpClass::kStructural},
    {"split", OpClass::kStructural},
    {"split_with_sizes", OpClass::kStructural},
    {"unbind", OpClass::kStructural},
    {"detach", OpClass::kStructural},
    {"alias", OpClass::kStructural},
    {"view_as", OpClass::kStructural},
    {"reshape_as", OpClass::kStructural},
    {"numel", OpClass::kStructural},
    {"dim", OpClass::kStructural},
    {"Int", OpClass::kStructural},
    {"len", OpClass::kStructural},
    {"__getitem__", OpClass::kStructural},
    {"contiguous_format", OpClass::kStructural},
    // elementwise
    {"relu", OpClass::kElementwise},
    {"relu6", OpClass::kElementwise},
    {"gelu", OpClass::kElementwise},
    {"lstm", OpClass::kRecurrent},
    {"gru", OpClass::kRecurrent},
    {"rnn_tanh", OpClass::kRecurrent},
    {"rnn_relu", OpClass::kRecurrent},
    {"silu", OpClass::kElementwise},
    {"sigmoid", OpClass::kElementwise},
    {"tanh", OpClass::kElementwise},
    {"hardtanh", OpClass::kElementwise},
    {"hardswish", OpClass::kElementwise},
    {"hardsigmoid", OpClass::kElementwise},
    {"leaky_relu", OpClass::kElementwise},
    {"elu", OpClass::kElementwise},
    {"mish", OpClass::kElementwise},
    {"softplus", OpClass::kElementwise},
    {"add", OpClass::kElementwise},
    {"sub", OpClass::kElementwise},
    {"rsub", OpClass::kElementwise},
    {"mul", OpClass::kElementwise},
    {"div", OpClass::kElementwise},
    {"pow", OpClass::kElementwise},
    {"sqrt", OpClass::kElementwise},
    {"rsqrt", OpClass::kElementwise},
    {"exp", OpClass::kElementwise},
    {"log", OpClass::kElementwise},
    {"neg", OpClass::kElementwise},
    {"abs", OpClass::kElementwise},
    {"clamp", OpClass::kElementwise},
    {"clamp_min", OpClass::kElementwise},
    {"where", OpClass::kElementwise},
    {"masked_fill", OpClass::kElementwise},
    {"erf", OpClass::kElementwise},
    {"dropout", OpClass::kElementwise},
    {"feature_dropout", OpClass::kElementwise},
    {"tril", OpClass::kElementwise},
    {"triu", OpClass::kElementwise},
    {"addcmul", OpClass::kElementwise},
    {"addcdiv", OpClass::kElementwise},
    {"sin", OpClass::kElementwise},
    {"cos", OpClass::kElementwise},
    {"eq", OpClass::kElementwise},
    {"ne", OpClass::kElementwise},
    {"lt", OpClass::kElementwise},
    {"gt", OpClass::kElementwise},
    {"le", OpClass::kElementwise},
    {"ge", OpClass::kElementwise},
    {"floor_divide", OpClass::kElementwise},
    {"remainder", OpClass::kElementwise},
});

}  // namespace

OpClass classify_op(const Node& node) {
  if (node.cost.status == CostStatus::kStructural) return OpClass::kStructural;
  std::string_view op(node.op);
  // prim:: nodes (ListConstruct, TupleUnpack, Constant, GetAttr, ...) only rearrange references.
  if (op.starts_with("prim::")) return OpClass::kStructural;
  if (op.starts_with("aten::")) op.remove_prefix(6);
  // In-place variants ("relu_", "add_") cost like their functional form.
  op = functional_op(op);
  for (const auto& entry : kOpTable) {
    if (entry.name == op) return entry.op_class;
  }
  return OpClass::kOther;
}

std::string_view op_class_name(OpClass op_class) {
  switch (op_class) {
    case OpClass::kMatmul:
      return "matmul";
    case OpClass::kConv:
      return "conv";
    case OpClass::kNorm:
      return "norm";
    case OpClass::kElementwise:
      return "elementwise";
    case OpClass::kReduction:
      return "reduction";
    case OpClass::kMemory:
      return "memory";
    case OpClass::kStructural:
      return "structural";
    case OpClass::kRecurrent:
      return "recurrent";
    case OpClass::kOther:
      break;
  }
  return "other";
}

double backward_ratio(OpClass op_class) {
  switch (op_class) {
    case OpClass::kMatmul:
    case OpClass::kConv:
    case OpClass::kRecurrent:
      return 2.0;
    case OpClass::kNorm:
      return 1.5;
    case OpClass::kStructural:
      return 0.0;
    case OpClass::kElementwise:
    case OpClass::kReduction:
    case OpClass::kMemory:
    case OpClass::kOther:
      break;
  }
  return 1.0;
}

}  // namespace partita

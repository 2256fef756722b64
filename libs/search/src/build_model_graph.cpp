#include <algorithm>
#include <cmath>
#include <string>

#include "graph_builder.h"
#include "partita/core/error.h"
#include "partita/search/model_spec.h"

namespace partita {

namespace {

using detail::GraphBuilder;
using detail::numel;
using Shape = std::vector<int64_t>;

// Linear layer y = x W^T + b: 2 * rows * in * out FLOPs.
ValueId linear(GraphBuilder& b, const std::string& scope, ValueId x, const Shape& in_shape, int64_t in,
               int64_t out) {
  const ValueId w = b.parameter(scope + ".weight", {out, in});
  const ValueId bias = b.parameter(scope + ".bias", {out});
  Shape shape = in_shape;
  shape.back() = out;
  return b.op("aten::linear", scope, {x, w, bias}, shape, 2.0 * numel(in_shape) / in * in * out);
}

ValueId layer_norm(GraphBuilder& b, const std::string& scope, ValueId x, const Shape& shape, int64_t width) {
  const ValueId w = b.parameter(scope + ".weight", {width});
  const ValueId bias = b.parameter(scope + ".bias", {width});
  return b.op("aten::layer_norm", scope, {x, w, bias}, shape, 8.0 * numel(shape));
}

Graph build_gpt(const ModelSpec& s, int batch) {
  GraphBuilder b(s.dtype);
  const int64_t B = batch, T = s.seq, W = s.width, H = s.heads, D = s.width / s.heads;
  const Shape act{B, T, W};
  const ValueId ids = b.input("input_ids", {B, T}, DType::kInt64);
  const ValueId wte = b.parameter("wte.weight", {s.vocab, W});
  const ValueId wpe = b.parameter("wpe.weight", {T, W});
  ValueId x = b.op("aten::embedding", "wte", {wte, ids}, act, 0);
  const ValueId pos = b.op("aten::embedding", "wpe", {wpe}, act, 0);
  x = b.op("aten::add", "embed", {x, pos}, act, static_cast<double>(numel(act)));
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "h." + std::to_string(l);
    const ValueId ln1 = layer_norm(b, p + ".ln_1", x, act, W);
    const ValueId qkv = linear(b, p + ".attn.c_attn", ln1, act, W, 3 * W);
    const Shape scores{B, H, T, T};
    const ValueId att = b.op("aten::matmul", p + ".attn.qk", {qkv}, scores, 2.0 * B * H * T * T * D);
    const ValueId prob = b.op("aten::softmax", p + ".attn.softmax", {att}, scores, 5.0 * numel(scores));
    const ValueId ctx = b.op("aten::matmul", p + ".attn.av", {prob, qkv}, act, 2.0 * B * H * T * T * D);
    const ValueId proj = linear(b, p + ".attn.c_proj", ctx, act, W, W);
    x = b.op("aten::add", p + ".attn.residual", {x, proj}, act, static_cast<double>(numel(act)));
    const ValueId ln2 = layer_norm(b, p + ".ln_2", x, act, W);
    const ValueId fc1 = linear(b, p + ".mlp.c_fc", ln2, act, W, 4 * W);
    const Shape wide{B, T, 4 * W};
    const ValueId gelu = b.op("aten::gelu", p + ".mlp.gelu", {fc1}, wide, 8.0 * numel(wide));
    const ValueId fc2 = linear(b, p + ".mlp.c_proj", gelu, wide, 4 * W, W);
    x = b.op("aten::add", p + ".mlp.residual", {x, fc2}, act, static_cast<double>(numel(act)));
  }
  const ValueId lnf = layer_norm(b, "ln_f", x, act, W);
  const ValueId w_head = b.parameter("lm_head.weight", {s.vocab, W});
  const Shape logits{B, T, s.vocab};
  return b.take(b.op("aten::linear", "lm_head", {lnf, w_head}, logits, 2.0 * B * T * W * s.vocab));
}

struct Conv {
  ValueId out;
  Shape shape;
};

// conv (no bias) + batch_norm (+ relu when asked).
Conv conv_bn(GraphBuilder& b, const std::string& scope, ValueId x, const Shape& in, int64_t out_ch, int k,
             int stride, bool relu) {
  const int64_t ho = (in[2] + stride - 1) / stride, wo = (in[3] + stride - 1) / stride;
  const Shape shape{in[0], out_ch, ho, wo};
  const ValueId w = b.parameter(scope + ".weight", {out_ch, in[1], k, k});
  ValueId y = b.op("aten::conv2d", scope, {x, w}, shape, 2.0 * numel(shape) * in[1] * k * k);
  const ValueId g = b.parameter(scope + ".bn.weight", {out_ch});
  const ValueId beta = b.parameter(scope + ".bn.bias", {out_ch});
  y = b.op("aten::batch_norm", scope + ".bn", {y, g, beta}, shape, 4.0 * numel(shape));
  if (relu) y = b.op("aten::relu", scope + ".relu", {y}, shape, static_cast<double>(numel(shape)));
  return Conv{y, shape};
}

Graph build_resnet(const ModelSpec& s, int batch) {
  GraphBuilder b(s.dtype);
  const ValueId img = b.input("images", {batch, s.channels, s.image, s.image}, s.dtype);
  Conv c = conv_bn(b, "conv1", img, {batch, s.channels, s.image, s.image}, s.widths[0], 7, 2, true);
  Shape pooled{batch, s.widths[0], c.shape[2] / 2, c.shape[3] / 2};
  ValueId x = b.op("aten::max_pool2d", "maxpool", {c.out}, pooled, 9.0 * numel(pooled));
  Shape shape = pooled;
  const int expansion = s.block == ResidualBlock::kBottleneck ? 4 : 1;
  for (size_t st = 0; st < s.blocks.size(); ++st) {
    for (int k = 0; k < s.blocks[st]; ++k) {
      const std::string p = "layer" + std::to_string(st + 1) + "." + std::to_string(k);
      const int stride = (k == 0 && st > 0) ? 2 : 1;
      const int64_t w = s.widths[st], out_ch = w * expansion;
      Conv y{x, shape};
      if (s.block == ResidualBlock::kBottleneck) {
        y = conv_bn(b, p + ".conv1", y.out, y.shape, w, 1, 1, true);
        y = conv_bn(b, p + ".conv2", y.out, y.shape, w, 3, stride, true);
        y = conv_bn(b, p + ".conv3", y.out, y.shape, out_ch, 1, 1, false);
      } else {
        y = conv_bn(b, p + ".conv1", y.out, y.shape, w, 3, stride, true);
        y = conv_bn(b, p + ".conv2", y.out, y.shape, out_ch, 3, 1, false);
      }
      ValueId skip = x;
      if (stride != 1 || shape[1] != out_ch)
        skip = conv_bn(b, p + ".downsample", x, shape, out_ch, 1, stride, false).out;
      x = b.op("aten::add", p + ".add", {y.out, skip}, y.shape, static_cast<double>(numel(y.shape)));
      x = b.op("aten::relu", p + ".relu", {x}, y.shape, static_cast<double>(numel(y.shape)));
      shape = y.shape;
    }
  }
  const Shape feat{batch, shape[1]};
  x = b.op("aten::adaptive_avg_pool2d", "avgpool", {x}, feat, static_cast<double>(numel(shape)));
  return b.take(linear(b, "fc", x, feat, shape[1], s.classes));
}

// The elements of every tensor the spec's graph makes at `batch` (parameters and activations, counted
// generously), in floating point: partita counts bytes in int64, which these sizes can pass (a batch of 2^31
// sequences of 2^20 tokens of width 4096 overflowed into a graph whose nodes were out of order).
long double elements_upper_bound(const ModelSpec& s, int batch) {
  const long double b = batch;
  if (s.architecture == Architecture::kGpt) {
    const long double t = s.seq, w = s.width, h = s.heads, v = s.vocab;
    const long double per_layer = 2 * b * h * t * t + 16 * b * t * w + 12 * w * w;
    return s.layers * per_layer + b * t * (v + 3 * w) + 2 * v * w + t * w;
  }
  // The stem at half the image, then stage i at a quarter of it halved i times, each block's tensors at most
  // ten of [batch, 4 x width, side, side], and the weights of its convolutions.
  long double side = s.image / 2.0L;
  long double total = b * s.channels * s.image * s.image + 4 * b * s.widths[0] * side * side;
  long double channels = s.widths[0];
  side /= 2;
  for (size_t i = 0; i < s.blocks.size(); ++i) {
    if (i > 0) side /= 2;
    const long double wide = 4.0L * s.widths[i];
    total += s.blocks[i] * (10 * b * wide * side * side + 3 * 9 * wide * std::max(wide, channels));
    channels = wide;
  }
  return total + channels * s.classes;
}

}  // namespace

Graph build_model_graph(const ModelSpec& spec, int batch) {
  spec.validate();
  PARTITA_CHECK(batch >= 1, "build_model_graph: batch is ", batch, "; it must be at least 1");
  // 8 bytes an element at most; int64 holds 2^63, and sums of such counts need room to spare.
  const long double bytes = 8 * elements_upper_bound(spec, batch);
  PARTITA_CHECK(bytes < std::ldexp(1.0L, 60), "model spec '", spec.name, "' at batch ", batch,
                " makes tensors of about ", static_cast<double>(bytes),
                " bytes in all, more than partita counts (2^60); lower the batch or the model's sizes");
  return spec.architecture == Architecture::kGpt ? build_gpt(spec, batch) : build_resnet(spec, batch);
}

}  // namespace partita

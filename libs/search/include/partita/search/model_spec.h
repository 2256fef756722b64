#pragma once
// Model specs without weights: a YAML description of a standard architecture (config/models/*.yaml) built
// directly into a partita::Graph with shapes, parameters and node costs (FLOPs 2 per multiply-add, bytes read
// and written once; status kEstimated), one node per big op, so plans can be made for models too big to load.
//
//   gpt:    embedding (+ positions), per layer: layer_norm, qkv linear, q.k^T matmul, softmax, attn.v matmul,
//           out projection, residual add, layer_norm, fc1 linear, gelu, fc2 linear, residual add; final
//           layer_norm and the vocabulary head (untied). Attention is not fused; no dropout.
//   resnet: conv/batch_norm/relu stem and max pool, residual blocks (basic: two 3x3 convs; bottleneck:
//           1x1-3x3-1x1), each conv followed by batch_norm, adds and relu; average pool and the classifier.
#include <string>
#include <vector>

#include "partita/graph/graph.h"

namespace partita {

enum class Architecture { kGpt, kResnet };
enum class ResidualBlock { kBasic, kBottleneck };

struct ModelSpec {
  std::string name;
  Architecture architecture = Architecture::kGpt;
  DType dtype = DType::kFloat32;
  // gpt
  int layers = 12;
  int width = 768;
  int heads = 12;
  int seq = 1024;
  int vocab = 50257;
  // resnet
  int image = 224;
  int channels = 3;
  int classes = 1000;
  std::vector<int> blocks{3, 4, 6, 3};
  std::vector<int> widths{64, 128, 256, 512};
  ResidualBlock block = ResidualBlock::kBottleneck;

  // Throws partita::Error naming the bad field.
  void validate() const;
};

// Parses YAML text / a file; errors are one line naming the file (`file_label` for text), the line and the
// field (hardware/yaml_map.h). `architecture` and `name` are required; a field of the other architecture or
// an unknown one is refused, and so is a number that is not whole or out of the range validate() allows
// (layers and a stage's blocks at most 1024).
ModelSpec parse_model_spec(const std::string& yaml_text, const std::string& file_label = "model spec text");
ModelSpec load_model_spec(const std::string& path);

// The graph for `batch` samples (input: i64 token ids [batch, seq] or f32 images [batch, C, H, W]).
Graph build_model_graph(const ModelSpec& spec, int batch);

}  // namespace partita

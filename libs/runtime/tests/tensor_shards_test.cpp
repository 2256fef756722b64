// The tensor-parallel shard pass (src/tensor_shards.h): which tensors a group splits and how.
#include "../src/tensor_shards.h"

#include <gtest/gtest.h>

#include <filesystem>

#include <torch/script.h>

#include "partita/core/error.h"
#include "partita/search/tensor_model.h"
#include "partita/torch_bridge/model.h"

namespace partita::detail {

namespace {

LoadedModel load(const std::string& path, const std::string& input) {
  LoadedModel m = load_model(path);
  annotate_shapes(m, {parse_input_spec(input)});
  return m;
}

std::string zoo(const std::string& name) { return std::string(PARTITA_MODELS_DIR) + "/" + name + ".pt"; }

// A scripted model saved for one test.
std::string scripted(const std::string& name, const std::string& code,
                     const std::vector<std::pair<std::string, std::vector<int64_t>>>& params) {
  const auto path = std::filesystem::temp_directory_path() / ("partita_shards_" + name + ".pt");
  torch::manual_seed(5);
  torch::jit::Module m(name);
  for (const auto& [pname, shape] : params)
    m.register_parameter(pname, (torch::randn(shape) * 0.1).requires_grad_(), false);
  m.define(code);
  m.save(path.string());
  return path.string();
}

std::string error_of(const Graph& g, int degree) {
  try {
    plan_tensor_shards(g, degree);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const Node* first(const Graph& g, const std::string& op, const std::string& scope) {
  for (const Node& n : g.nodes()) {
    if (n.op == op && n.scope == scope) return &n;
  }
  return nullptr;
}

}  // namespace

TEST(TensorShards, MlpSplitsItsPairAndGathersTheOpenOne) {
  const LoadedModel m = load(zoo("mlp"), "8x64");
  const auto plan = plan_tensor_shards(m.ir, 2);
  const Node* fc1 = first(m.ir, "aten::linear", "fc1");
  const Node* fc2 = first(m.ir, "aten::linear", "fc2");
  const Node* fc3 = first(m.ir, "aten::linear", "fc3");
  ASSERT_TRUE(fc1 && fc2 && fc3);
  const auto& n1 = plan.nodes[static_cast<size_t>(fc1->id)];
  EXPECT_EQ(n1.inputs[1].kind, InputRewrite::Kind::kPart);  // weight rows
  EXPECT_EQ(n1.inputs[1].shard, (Shard{0, 1}));
  EXPECT_EQ(n1.inputs[2].shard, (Shard{0, 1}));  // bias
  EXPECT_EQ(plan.shard[static_cast<size_t>(fc1->outputs[0])], (Shard{1, 1}));
  const auto& n2 = plan.nodes[static_cast<size_t>(fc2->id)];
  EXPECT_EQ(n2.inputs[1].shard, (Shard{1, 1}));  // weight columns
  EXPECT_EQ(n2.inputs[2].kind, InputRewrite::Kind::kFirstDeviceOnly);
  EXPECT_TRUE(n2.all_reduce);
  EXPECT_FALSE(plan.shard[static_cast<size_t>(fc2->outputs[0])].split());
  EXPECT_EQ(plan.shard[static_cast<size_t>(fc3->outputs[0])], (Shard{1, 1}));
  EXPECT_EQ(plan.gather, std::vector<bool>{true});
  EXPECT_EQ(plan.all_reduces, 1);
  // 10 outputs do not split four ways: refused, naming the node.
  const std::string four = error_of(m.ir, 4);
  EXPECT_NE(four.find("aten::linear (fc3)"), std::string::npos) << four;
  EXPECT_NE(four.find("(10)"), std::string::npos) << four;
}

// Two heads reading one split activation (forked_heads: a VAE's mean and log-variance) both close its pair:
// roles follow the data, not the node order, which took the second head for a new column split and refused
// it ("it opens a column split but its input is already split"). The decoder after them opens a pair of
// its own, left open and gathered at the end.
TEST(TensorShards, TwoHeadsReadingOneSplitActivationBothCloseItsPair) {
  const LoadedModel m = load(zoo("forked_heads"), "8x32");
  const auto roles = tensor_roles(m.ir);
  const auto role_of = [&](const char* scope) {
    const Node* n = first(m.ir, "aten::linear", scope);
    EXPECT_TRUE(n) << scope;
    return n ? roles[static_cast<size_t>(n->id)] : TensorRole::kReplicated;
  };
  EXPECT_EQ(role_of("fc"), TensorRole::kColumn);
  EXPECT_EQ(role_of("mu"), TensorRole::kRow);
  EXPECT_EQ(role_of("logvar"), TensorRole::kRow);
  EXPECT_EQ(role_of("dec"), TensorRole::kColumn);
  const auto plan = plan_tensor_shards(m.ir, 2);
  EXPECT_EQ(plan.all_reduces, 2);
  EXPECT_EQ(plan.gather, std::vector<bool>{true});
}

TEST(TensorShards, GptSplitsHeadsBlockwiseAndTheVocabulary) {
  const LoadedModel m = load(zoo("gpt"), "2x16:i64:2048");
  const auto roles = tensor_roles(m.ir);
  const auto plan = plan_tensor_shards(m.ir, 2);
  // q, k and v: the qkv weight is taken as 3 blocks so each device holds whole heads of all three.
  const Node* qkv = first(m.ir, "aten::linear", "0.attn.qkv");
  ASSERT_TRUE(qkv);
  EXPECT_EQ(roles[static_cast<size_t>(qkv->id)], TensorRole::kColumn);
  EXPECT_EQ(plan.nodes[static_cast<size_t>(qkv->id)].inputs[1].shard, (Shard{0, 3}));
  EXPECT_EQ(plan.shard[static_cast<size_t>(qkv->outputs[0])], (Shard{2, 3}));
  // The split into q, k, v divides its size; each view's head count is divided.
  int divided_sizes = 0, divided_views = 0, scaled_sizes = 0;
  for (const Node& n : m.ir.nodes()) {
    const auto& ns = plan.nodes[static_cast<size_t>(n.id)];
    for (const auto& in : ns.inputs) {
      divided_sizes += in.kind == InputRewrite::Kind::kDivide;
      divided_views += in.kind == InputRewrite::Kind::kDivideEntry;
    }
    scaled_sizes += ns.scale_output_entry != -2;
  }
  EXPECT_EQ(divided_sizes, 4);      // one split per layer
  EXPECT_EQ(divided_views, 4 * 4);  // q, k, v and the merge back, per layer
  EXPECT_EQ(scaled_sizes, 0);       // the model takes sizes of whole tensors only
  // Heads (dim 1 after the transpose) stay split through the scores, the mask add and softmax.
  const Node* softmax = first(m.ir, "aten::softmax", "0.attn");
  ASSERT_TRUE(softmax);
  EXPECT_EQ(plan.shard[static_cast<size_t>(softmax->outputs[0])], (Shard{1, 1}));
  // The token table by rows, all-reduced; two pairs per layer; the LM head gathered.
  const Node* tok = first(m.ir, "aten::embedding", "tok");
  ASSERT_TRUE(tok);
  EXPECT_TRUE(plan.nodes[static_cast<size_t>(tok->id)].vocabulary);
  // Both tables are split here: at 16 positions the 128-row position table is bigger than its output.
  EXPECT_EQ(plan.all_reduces, 2 + 2 * 4);
  EXPECT_EQ(plan.gather, std::vector<bool>{true});
  // Four ways: 4 heads, one per device.
  EXPECT_NO_THROW(plan_tensor_shards(m.ir, 4));
  // Eight ways: 4 heads do not split.
  EXPECT_NE(error_of(m.ir, 8).find("aten::view"), std::string::npos) << error_of(m.ir, 8);
}

// GPT-2's Conv1D: addmm(b, x.view(-1, C), W[in, out]) viewed back to 3-D, then cut in two: the weight is
// split as two blocks (seen through the view); the row addmm's bias is zeros on all but the first device.
TEST(TensorShards, Conv1DAddmmsSplitBlockwiseThroughTheirViews) {
  const LoadedModel m = load(scripted("conv1d", R"JIT(
def forward(self, x):
    b = x.size(0)
    t = x.size(1)
    h = torch.addmm(self.b1, x.view(-1, 16), self.w1).view(b, t, 64)
    a, g = h.split(32, 2)
    h = torch.relu(a) * torch.sigmoid(g)
    return torch.addmm(self.b2, h.reshape(-1, 32), self.w2).view(b, t, 16)
)JIT",
                                      {{"w1", {16, 64}}, {"b1", {64}}, {"w2", {32, 16}}, {"b2", {16}}}),
                             "4x8x16");
  const auto plan = plan_tensor_shards(m.ir, 2);
  std::vector<const Node*> addmm;
  for (const Node& n : m.ir.nodes())
    if (n.op == "aten::addmm") addmm.push_back(&n);
  ASSERT_EQ(addmm.size(), 2u);
  const auto& up = plan.nodes[static_cast<size_t>(addmm[0]->id)];
  EXPECT_EQ(up.inputs[2].shard, (Shard{1, 2}));  // W[in, out] by output columns, two blocks
  EXPECT_EQ(up.inputs[0].shard, (Shard{0, 2}));  // the bias alike
  const auto& down = plan.nodes[static_cast<size_t>(addmm[1]->id)];
  EXPECT_EQ(down.inputs[2].shard, (Shard{0, 1}));  // W[in, out] by input rows
  EXPECT_EQ(down.inputs[0].kind, InputRewrite::Kind::kZeroOnOthers);
  EXPECT_TRUE(down.all_reduce);
  EXPECT_EQ(plan.gather, std::vector<bool>{false});
}

TEST(TensorShards, AnOpItCannotSplitIsRefusedNamingIt) {
  // A layer norm between the column and the row matmul normalizes over the split features.
  const LoadedModel m = load(scripted("norm_inside", R"JIT(
def forward(self, x):
    h = torch.layer_norm(torch.matmul(x, self.w0), [16])
    return torch.matmul(h, self.w1)
)JIT",
                                      {{"w0", {8, 16}}, {"w1", {16, 4}}}),
                             "4x8");
  const std::string why = error_of(m.ir, 2);
  EXPECT_NE(why.find("aten::layer_norm"), std::string::npos) << why;
  EXPECT_NE(why.find("split along dim 1"), std::string::npos) << why;
  EXPECT_NE(why.find("--strategy"), std::string::npos) << why;
  // A softmax over the split features.
  const LoadedModel s = load(scripted("softmax_inside", R"JIT(
def forward(self, x):
    return torch.matmul(torch.softmax(torch.matmul(x, self.w0), -1), self.w1)
)JIT",
                                      {{"w0", {8, 16}}, {"w1", {16, 4}}}),
                             "4x8");
  EXPECT_NE(error_of(s.ir, 2).find("normalizes along the split dim"), std::string::npos) << error_of(s.ir, 2);
}

TEST(TensorShards, ReplicatedOperandsAreSlicedOrBroadcast) {
  // A bias added after the column matmul (full size along the split dim: sliced) and a per-row scale (size 1
  // there: broadcast).
  const LoadedModel m = load(scripted("operands", R"JIT(
def forward(self, x):
    h = torch.matmul(x, self.w0) + self.b0
    h = torch.relu(h * x.sum(1, keepdim=True))
    return torch.matmul(h, self.w1)
)JIT",
                                      {{"w0", {8, 16}}, {"b0", {16}}, {"w1", {16, 4}}}),
                             "4x8");
  const auto plan = plan_tensor_shards(m.ir, 2);
  const Node* add = first(m.ir, "aten::add", "");
  const Node* mul = first(m.ir, "aten::mul", "");
  ASSERT_TRUE(add && mul);
  EXPECT_EQ(plan.nodes[static_cast<size_t>(add->id)].inputs[1].kind, InputRewrite::Kind::kPart);
  EXPECT_EQ(plan.nodes[static_cast<size_t>(add->id)].inputs[1].shard, (Shard{0, 1}));
  EXPECT_EQ(plan.nodes[static_cast<size_t>(mul->id)].inputs[1].kind, InputRewrite::Kind::kAsIs);
  EXPECT_TRUE(plan.nodes[static_cast<size_t>(mul->id)].splits);
  EXPECT_EQ(plan.gather, std::vector<bool>{false});
}

}  // namespace partita::detail

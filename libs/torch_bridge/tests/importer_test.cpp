#include <gtest/gtest.h>

#include <map>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "partita/core/error.h"
#include "partita/torch_bridge/executor.h"
#include "partita/torch_bridge/model.h"
#include "zoo.h"

namespace partita {

using testing::zoo_model;

TEST(Importer, MlpBecomesLinearReluChainWithNamedParameters) {
  LoadedModel m = load_model(zoo_model("mlp"));
  annotate_shapes(m, {parse_input_spec("32x64")});
  const Graph& g = m.ir;
  ASSERT_EQ(g.inputs().size(), 1u);
  // fc1, fc2, fc3 weights and biases: 64*256+256 + 256*256+256 + 256*10+10.
  EXPECT_EQ(g.parameter_elements(), 64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10);
  std::vector<std::string> names;
  for (const auto& p : g.parameters()) names.push_back(p.name);
  EXPECT_NE(std::find(names.begin(), names.end(), "fc1.weight"), names.end());
  std::vector<std::string> ops;
  for (const auto& n : g.nodes()) ops.push_back(n.op);
  EXPECT_EQ(ops, (std::vector<std::string>{"aten::linear", "aten::relu", "aten::linear", "aten::relu",
                                           "aten::linear"}));
  const Value& out = g.value(g.outputs()[0]);
  ASSERT_NE(out.meta(), nullptr);
  EXPECT_EQ(out.meta()->shape, (std::vector<int64_t>{32, 10}));
  // Forward FLOPs: 2*32*(64*256 + 256*256 + 256*10) for the matmuls, plus bias adds and ReLUs.
  const double matmul = 2.0 * 32 * (64 * 256 + 256 * 256 + 256 * 10);
  EXPECT_GE(g.total_flops().value(), matmul);
  EXPECT_LE(g.total_flops().value(), matmul * 1.02);
}

TEST(Importer, CnnHasBatchNormBuffersAndConvolutionShapes) {
  LoadedModel m = load_model(zoo_model("cnn"));
  annotate_shapes(m, {parse_input_spec("8x3x32x32")});
  int buffers = 0;
  for (const auto& p : m.ir.parameters()) buffers += p.requires_grad ? 0 : 1;
  EXPECT_EQ(buffers,
            6);  // running_mean and running_var per batch norm (num_batches_tracked is unused in eval)
  // 3x3 conv weights (no bias), BN affine, head.
  EXPECT_EQ(m.ir.parameter_elements(),
            16 * 3 * 9 + 32 * 16 * 9 + 64 * 32 * 9 + 2 * (16 + 32 + 64) + 64 * 16 * 10 + 10);
  EXPECT_EQ(m.ir.value(m.ir.outputs()[0]).meta()->shape, (std::vector<int64_t>{8, 10}));
  bool saw_conv = false;
  for (const auto& n : m.ir.nodes()) {
    if (n.op != "aten::_convolution") continue;
    saw_conv = true;
    EXPECT_EQ(n.cost.status, CostStatus::kEstimated);
    EXPECT_GT(n.cost.flops.value(), 0);
  }
  EXPECT_TRUE(saw_conv);
}

TEST(Importer, GptTakesTokenIdsAndEveryOpHasAnEstimateOrIsListed) {
  LoadedModel m = load_model(zoo_model("gpt"));
  annotate_shapes(m, {parse_input_spec("2x16:i64:2048")});
  EXPECT_EQ(m.ir.value(m.ir.outputs()[0]).meta()->shape, (std::vector<int64_t>{2, 16, 2048}));
  for (const auto& n : m.ir.nodes()) {
    if (n.op == "aten::matmul") {
      EXPECT_EQ(n.cost.status, CostStatus::kEstimated);
    }
  }
}

TEST(Importer, MissingFileAndNonTorchScriptAreClearErrors) {
  try {
    load_model("/nonexistent/model.pt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos);
  }
  const std::string junk = ::testing::TempDir() + "/junk.pt";
  std::ofstream(junk) << "this is not a zip archive";
  try {
    load_model(junk);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a TorchScript file"), std::string::npos) << e.what();
  }
}

// What annotate_shapes says when `model` refuses an input of `spec`; "annotated" when it does not.
std::string annotate_error(const std::string& zoo_name, const std::string& spec) {
  LoadedModel m = load_model(zoo_model(zoo_name));
  try {
    annotate_shapes(m, {parse_input_spec(spec)});
  } catch (const Error& e) {
    return e.what();
  }
  return "annotated";
}

TEST(Importer, WrongInputsNameTheModelAndNode) {
  const std::string msg = annotate_error("cnn", "8x3");
  EXPECT_NE(msg.find("rejected the input(s) f32[8, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("aten::_convolution"), std::string::npos) << msg;
  LoadedModel gpt = load_model(zoo_model("gpt"));
  EXPECT_THROW(annotate_shapes(gpt, {parse_input_spec("2x16")}), Error);  // floats where token ids belong
  EXPECT_THROW(annotate_shapes(gpt, {}), Error);
  EXPECT_THROW(annotate_shapes(gpt, {parse_input_spec("2x16:i64:10"), parse_input_spec("2x16:i64:10")}),
               Error);
}

}  // namespace partita

namespace partita {

std::string load_error(const std::string& zoo_name) {
  try {
    load_model(testing::zoo_model(zoo_name));
  } catch (const Error& e) {
    return e.what();
  }
  return "loaded";
}

// Two files a user may hand over instead of TorchScript: what torch.save() writes, and a quantized model
// whose layers keep packed weights. Each gets a line saying what it is and what to save instead.
TEST(Importer, ATorchSaveFileAndAQuantizedModelAreNamedForWhatTheyAre) {
  const std::string saved = load_error("state_dict");
  EXPECT_NE(saved.find("is a torch.save() file (a state_dict or a pickled nn.Module), not TorchScript"),
            std::string::npos)
      << saved;
  const std::string quantized = load_error("quantized_mlp");
  EXPECT_NE(
      quantized.find("read by quantized::linear_dynamic in fc1: the packed weights of a quantized model"),
      std::string::npos)
      << quantized;
  EXPECT_NE(quantized.find("give partita the float model"), std::string::npos) << quantized;
}

TEST(Importer, ScriptedControlFlowIsRefusedWithNodeAndLine) {
  try {
    load_model(testing::zoo_model("control_flow"));
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("prim::If"), std::string::npos) << msg;
    EXPECT_NE(msg.find("prim::If at "), std::string::npos) << msg;
    EXPECT_NE(msg.find(".py:"), std::string::npos) << msg;  // the line in the saved TorchScript code
    EXPECT_NE(msg.find("torch.jit.trace"), std::string::npos) << msg;
  }
}

// A scripted module (not traced): its attributes that are not tensors or submodules become the constants they
// hold, as train() or eval() left them, so the branches they decide fold away; the shape checks that raise
// are dropped and counted. The zoo's ScriptedCNN checks its input's rank and holds a batch norm (which checks
// the rank too, and in training the batch size), a dropout, a float, an int, a flag and a bias that is None.
TEST(Importer, AScriptedModuleFoldsItsAttributesAsTrainOrEvalLeftThem) {
  for (const ModuleMode mode : {ModuleMode::kEval, ModuleMode::kTrain}) {
    SCOPED_TRACE(mode == ModuleMode::kTrain ? "train" : "eval");
    const bool training = mode == ModuleMode::kTrain;
    LoadedModel m = load_model(zoo_model("scripted_cnn"), mode);
    EXPECT_EQ(m.dropped_checks, training ? 3 : 2);
    std::vector<const torch::jit::Node*> nodes;
    for (const torch::jit::Node* n : m.torch_graph->nodes()) {
      EXPECT_TRUE(n->blocks().empty()) << *n;  // no If or Loop is left
      EXPECT_NE(n->kind(), c10::prim::GetAttr);
      EXPECT_NE(n->kind(), c10::prim::RaiseException);
      nodes.push_back(n);
    }
    const auto argument = [&](const std::string& op, size_t k) {
      for (const torch::jit::Node* n : nodes) {
        if (n->kind().toQualString() == op) return torch::jit::toIValue(n->input(k)).value();
      }
      ADD_FAILURE() << "no " << op;
      return c10::IValue();
    };
    EXPECT_EQ(argument("aten::batch_norm", 5), c10::IValue(training));  // use the batch's statistics
    EXPECT_EQ(argument("aten::dropout", 2), c10::IValue(training));
    EXPECT_EQ(argument("aten::max_pool2d", 1), c10::IValue(std::vector<int64_t>{2, 2}));
    EXPECT_EQ(argument("aten::mul", 1), c10::IValue(0.5));
    int means = 0, adds = 0, counts = 0;  // the residual (the flag is set) but not the bias (it is None)
    for (const torch::jit::Node* n : nodes) {
      means += n->kind() == c10::aten::mean;
      adds += n->kind() == c10::aten::add;
      counts += n->kind() == c10::aten::add_;
    }
    EXPECT_EQ(means, 1);
    EXPECT_EQ(adds, 1);
    EXPECT_EQ(counts, training ? 1 : 0);  // training, batch norm counts its batches
    annotate_shapes(m, {parse_input_spec("4x3x32x32")});
    EXPECT_EQ(m.ir.value(m.ir.outputs()[0]).meta()->shape, (std::vector<int64_t>{4, 10}));
  }
}

// A scripted recurrent layer hands aten::gru the list of its weights (a List[Tensor] attribute, which
// LowerGraph refuses): the importer reads each from the attribute that holds it, so they are the model's
// named, trainable parameters like a traced GRU's. Its forward branches on the input's rank (`input.dim() ==
// 3`), which the example inputs answer; without them the branch is refused.
TEST(Importer, AScriptedRecurrentLayersWeightListIsItsParameters) {
  const std::vector<InputSpec> specs{parse_input_spec("4x6x8")};
  LoadedModel m = load_model(zoo_model("scripted_gru"), ModuleMode::kTrain, specs);
  annotate_shapes(m, specs);
  std::vector<std::string> names;
  for (const auto& p : m.ir.parameters()) {
    if (p.name.rfind("rnn.", 0) == 0) names.push_back(p.name);
    EXPECT_TRUE(p.requires_grad) << p.name;
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"rnn.bias_hh_l0", "rnn.bias_ih_l0", "rnn.weight_hh_l0",
                                             "rnn.weight_ih_l0"}));
  const auto gru = std::find_if(m.ir.nodes().begin(), m.ir.nodes().end(),
                                [](const Node& n) { return n.op == "aten::gru"; });
  ASSERT_NE(gru, m.ir.nodes().end());
  EXPECT_EQ(m.ir.value(m.ir.outputs()[0]).meta()->shape, (std::vector<int64_t>{4, 3}));
  for (const torch::jit::Node* n : m.torch_graph->nodes()) EXPECT_TRUE(n->blocks().empty()) << *n;
  const std::string without_inputs = load_error("scripted_gru");
  EXPECT_NE(without_inputs.find("prim::If at rnn.py:"), std::string::npos) << without_inputs;
}

// A scripted torch.nn transformer encoder branches on what a run fixes (multi-head attention's rank test, the
// fast-path tests on devices, grad mode and autocast): with example inputs they fold as partita runs the
// mode, inference (no grad) taking the fused kernel and training the plain layers; without inputs a branch
// is left and refused naming its line.
TEST(Importer, AScriptedEncodersRunDecidedBranchesFoldAsTheModeRuns) {
  const std::vector<InputSpec> specs{parse_input_spec("4x6x16")};
  for (const ModuleMode mode : {ModuleMode::kEval, ModuleMode::kTrain}) {
    SCOPED_TRACE(mode == ModuleMode::kTrain ? "train" : "eval");
    LoadedModel m = load_model(zoo_model("scripted_encoder"), mode, specs);
    int fused = 0, dropouts = 0;
    for (const torch::jit::Node* n : m.torch_graph->nodes()) {
      EXPECT_TRUE(n->blocks().empty()) << *n;
      fused += n->kind().toQualString() == std::string("aten::_transformer_encoder_layer_fwd");
      dropouts += n->kind() == c10::aten::dropout;
    }
    EXPECT_EQ(fused, mode == ModuleMode::kEval ? 2 : 0);
    EXPECT_EQ(dropouts, mode == ModuleMode::kTrain ? 8 : 0);  // attention, feed-forward, two residuals
    annotate_shapes(m, specs);
    EXPECT_EQ(m.ir.value(m.ir.outputs()[0]).meta()->shape, (std::vector<int64_t>{4, 10}));
  }
  const std::string without_inputs = load_error("scripted_encoder");
  EXPECT_NE(without_inputs.find("prim::If at transformer.py:"), std::string::npos) << without_inputs;
}

// A scripted forward() that reads no plain attribute (only a submodule) and branches on its input's rank is
// folded like any other: its check refuses a 3-d input in its words, a 2-d one leaves no branch.
TEST(Importer, AScriptedForwardWithoutPlainAttributesStillFoldsItsRankBranches) {
  LoadedModel m = load_model(zoo_model("rank_checked"), ModuleMode::kEval, {parse_input_spec("8x8")});
  for (const torch::jit::Node* n : m.torch_graph->nodes()) EXPECT_TRUE(n->blocks().empty()) << *n;
  try {
    load_model(zoo_model("rank_checked"), ModuleMode::kEval, {parse_input_spec("8x8x2")});
    FAIL() << "loaded a 3-d input";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("RankChecked takes (batch, 8) or (8,)"), std::string::npos)
        << e.what();
  }
}

// Loading a scripted model runs it (the branch probe in the importer, the dropped checks in annotate_shapes):
// in training mode that run would update batch norm's running statistics and draw dropout masks. The model
// keeps the buffers it was saved with and the CPU generator its state, as after loading a traced model.
TEST(Importer, RunningAScriptedModelToLoadItLeavesItsBuffersAndTheGeneratorAlone) {
  const std::vector<InputSpec> specs{parse_input_spec("4x3x32x32")};
  torch::manual_seed(11);
  LoadedModel m = load_model(zoo_model("scripted_cnn"), ModuleMode::kTrain, specs);
  annotate_shapes(m, specs);
  const torch::Tensor drawn = torch::rand({8});
  torch::manual_seed(11);
  EXPECT_TRUE(torch::equal(drawn, torch::rand({8})));
  const torch::jit::Module saved = torch::jit::load(zoo_model("scripted_cnn"));
  const auto want = saved.named_buffers();
  const auto got = m.module.named_buffers();
  std::map<std::string, torch::Tensor> saved_buffers;
  for (const auto& b : want) saved_buffers[b.name] = b.value;
  size_t compared = 0;
  for (const auto& b : got) {
    ASSERT_TRUE(saved_buffers.count(b.name)) << b.name;
    EXPECT_TRUE(torch::equal(b.value, saved_buffers[b.name])) << b.name;
    ++compared;
  }
  EXPECT_EQ(compared, 3u);  // batch norm's running mean, variance and batch count
}

// The checks dropped from a scripted forward() still refuse what the module refuses: annotate_shapes runs the
// module once and names the input and the model's own message.
TEST(Importer, AScriptedModulesDroppedChecksStillRefuseWhatItRefuses) {
  const std::string msg = annotate_error("scripted_cnn", "4x3x32");
  EXPECT_NE(msg.find("rejected the input(s) f32[4, 3, 32]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ScriptedCNN expects a 4-d input (batch, 3, height, width)"), std::string::npos) << msg;
}

// The run that folds a scripted forward()'s branches at load goes through its checks on the load's inputs,
// so annotate_shapes does not run the module again for them; other inputs are checked by the module itself,
// in its words (the GRU's own check of the feature size, not an error of the lowered graph's aten::gru).
TEST(Importer, AScriptedModuleCheckedAtLoadIsCheckedAgainOnOtherInputs) {
  const std::vector<InputSpec> loaded{parse_input_spec("4x6x8")};
  LoadedModel m = load_model(zoo_model("scripted_gru"), ModuleMode::kEval, loaded);
  ASSERT_GT(m.dropped_checks, 0);
  ASSERT_TRUE(m.checked_inputs.has_value());
  EXPECT_EQ(*m.checked_inputs, loaded);
  annotate_shapes(m, loaded);
  try {
    annotate_shapes(m, {parse_input_spec("4x6x5")});
    ADD_FAILURE() << "a feature size of 5 where the GRU takes 8 was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("rejected the input(s) f32[4, 6, 5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("input.size(-1) must be equal to input_size. Expected 8, got 5"), std::string::npos)
        << msg;
  }
}

// A scripted module defined here, saved and loaded with `inputs` (its forward's source in `body`).
LoadedModel load_defined(const std::string& name, const std::string& body,
                         const std::vector<InputSpec>& inputs) {
  const std::string path = ::testing::TempDir() + "/partita_" + name + ".pt";
  {
    torch::jit::Module module(name);
    module.define(body);
    module.save(path);
  }
  struct Remove {
    std::string path;
    ~Remove() { std::remove(path.c_str()); }
  } remove{path};
  return load_model(path, ModuleMode::kEval, inputs);
}

// A scripted forward() whose only check reads a size (no condition a run fixes): no run folds anything, so
// the module itself must still check the input. (Since the load's folding run was taken as the check, a batch
// of 7 passed this even-batch check without any run.)
TEST(Importer, AScriptedCheckOnASizeAloneIsStillTheModulesToMake) {
  const std::string body = R"JIT(
def forward(self, x):
    assert x.size(0) % 2 == 0, "EvenBatch needs an even batch"
    return x * 2
)JIT";
  const std::vector<InputSpec> odd{parse_input_spec("7x4")};
  LoadedModel m = load_defined("EvenBatch", body, odd);
  EXPECT_FALSE(m.checked_inputs.has_value());
  try {
    annotate_shapes(m, odd);
    ADD_FAILURE() << "an odd batch passed the model's even-batch check";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("EvenBatch needs an even batch"), std::string::npos) << e.what();
  }
  LoadedModel even = load_defined("EvenBatch", body, {parse_input_spec("8x4")});
  annotate_shapes(even, {parse_input_spec("8x4")});
}

// A loop of a fixed count (`for i in range(3)`) is what a trace records: its body three times. It was refused
// as "data-dependent control flow".
TEST(Importer, AScriptedLoopOfAFixedCountIsUnrolled) {
  LoadedModel m = load_defined("Repeats", R"JIT(
def forward(self, x):
    for i in range(3):
        x = torch.relu(x) + i
    return x
)JIT",
                               {parse_input_spec("2x4")});
  annotate_shapes(m, {parse_input_spec("2x4")});
  int relus = 0;
  for (const Node& n : m.ir.nodes()) relus += n.op == "aten::relu";
  EXPECT_EQ(relus, 3);
  const torch::Tensor x = torch::randn({2, 4});
  torch::NoGradGuard no_grad;
  const torch::Tensor got = Executor(m).run({x})[0].toTensor();
  EXPECT_TRUE(torch::equal(got, m.module.forward({x}).toTensor()));
}

// forward(x, mask: Optional[Tensor] = None, scale: float = 2.0), as transformers take a mask: with one
// --input the arguments after it take their defaults (it was refused: "takes 3 input(s) but 1 --input were
// given"), with two the mask is a tensor (it was refused as data-dependent control flow, `mask is not None`).
TEST(Importer, ArgumentsLeftOutTakeTheirDefaultsAndAGivenOptionalTensorIsATensor) {
  const std::string body = R"JIT(
def forward(self, x, mask: Optional[Tensor] = None, scale: float = 2.0):
    y = x * scale
    if mask is not None:
        y = y * mask
    return y
)JIT";
  const torch::Tensor x = torch::randn({2, 4});
  const torch::Tensor mask = torch::randn({2, 4});
  for (const bool masked : {false, true}) {
    std::vector<InputSpec> specs{parse_input_spec("2x4")};
    if (masked) specs.push_back(parse_input_spec("2x4"));
    LoadedModel m = load_defined("Masked", body, specs);
    annotate_shapes(m, specs);
    EXPECT_EQ(m.ir.inputs().size(), specs.size());
    for (const Node& n : m.ir.nodes()) EXPECT_NE(n.op, "prim::If") << masked;
    std::vector<c10::IValue> args;
    args.emplace_back(x);
    if (masked) args.emplace_back(mask);
    torch::NoGradGuard no_grad;
    const torch::Tensor got = Executor(m).run(args)[0].toTensor();
    EXPECT_TRUE(torch::equal(got, masked ? x * 2.0 * mask : x * 2.0)) << masked;
    EXPECT_TRUE(torch::equal(got, m.module.forward(args).toTensor())) << masked;
  }
  // An argument without a default is still the user's to give.
  LoadedModel pair =
      load_defined("Pair", "def forward(self, x, y):\n    return x + y\n", {parse_input_spec("2x4")});
  try {
    annotate_shapes(pair, {parse_input_spec("2x4")});
    ADD_FAILURE() << "one --input accepted for forward(self, x, y)";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("takes 2 input(s) but 1 --input were given"), std::string::npos)
        << e.what();
  }
}

// A dict returned by forward() (torchvision's segmentation models, a model traced with strict=False) is
// imported as the tuple of its values in the dict's order, with the keys kept; the executor's outputs are
// the module's own dict values. A dict nested in what forward() returns is refused at load naming the node
// (it was an internal error with an empty message).
TEST(Importer, ADictReturnedByForwardIsTheTupleOfItsValues) {
  LoadedModel m = load_model(zoo_model("dict_output"));
  EXPECT_EQ(m.output_keys, (std::vector<std::string>{"logits", "features"}));
  annotate_shapes(m, {parse_input_spec("8x16")});
  const Graph& g = m.ir;
  ASSERT_EQ(g.outputs().size(), 1u);
  const Value& out = g.value(g.outputs()[0]);
  EXPECT_EQ(out.kind, ValueKind::kTuple);
  ASSERT_EQ(out.tensors.size(), 2u);
  EXPECT_EQ(out.tensors[0].shape, (std::vector<int64_t>{8, 4}));
  EXPECT_EQ(out.tensors[1].shape, (std::vector<int64_t>{8, 32}));
  const torch::Tensor x = torch::randn({8, 16});
  const auto want = m.module.forward({x}).toGenericDict();
  const Executor executor(m);
  const auto got = executor.run({x})[0].toTupleRef().elements();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(torch::allclose(got[0].toTensor(), want.at("logits").toTensor()));
  EXPECT_TRUE(torch::allclose(got[1].toTensor(), want.at("features").toTensor()));

  try {
    load_model(zoo_model("nested_dict_output"));
    FAIL() << "imported a dict nested in a tuple";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("nested_dict_output.pt' builds a dict (prim::DictConstruct"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("returns tuple(out.values())"), std::string::npos) << msg;
  }
}

// A forward() that writes its own state and reads it afterwards depends on how often it runs: refused at
// load naming the state, the write and the read. The batch-norm models (num_batches_tracked.add_(1), never
// read) load.
TEST(Importer, StateUpdatedInForwardAndReadAfterwardsIsRefused) {
  for (const auto& [model, expected] : std::vector<std::pair<std::string, std::string>>{
           {"counts_calls", "updates buffer 'calls' in place (node 0 aten::add_"},
           {"clamps_weight", "updates parameter 'head.weight' in place (node 0 aten::clamp_"}}) {
    try {
      load_model(testing::zoo_model(model));
      ADD_FAILURE() << model << " loaded";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(expected), std::string::npos) << msg;
      EXPECT_NE(msg.find("and then reads it (node "), std::string::npos) << msg;
    }
  }
  for (const char* model : {"cnn_train", "batch_norm_mlp"}) {
    EXPECT_NO_THROW(load_model(testing::zoo_model(model))) << model;
  }
  // nn.Embedding(max_norm=...) gets its own reason (its writes do not depend on the call count) and remedy.
  try {
    load_model(testing::zoo_model("embedding_max_norm"));
    ADD_FAILURE() << "embedding_max_norm loaded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("nn.Embedding(max_norm=...) renormalizes rows of parameter 'embed.weight' in place"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("aten::embedding_renorm_"), std::string::npos) << msg;
    EXPECT_NE(msg.find("weight.renorm_(2, 0, max_norm)"), std::string::npos) << msg;
  }
}

TEST(Importer, FirstLineSkipsLeadingBlankLines) {
  EXPECT_EQ(first_line(std::runtime_error("\n  \nno operator for prim::X\nmore")), "no operator for prim::X");
  EXPECT_EQ(first_line(std::runtime_error("one\ntwo")), "one");
  EXPECT_EQ(first_line(std::runtime_error("\n")), "(no message)");
}

TEST(ModelSnapshot, RestoreBringsTrainedWeightsBackInPlaceAndDropsGradients) {
  LoadedModel m = load_model(zoo_model("cnn"));  // parameters and batch-norm buffers
  const ModelSnapshot initial(m);
  const LoadedModel fresh = load_model(zoo_model("cnn"));
  const void* first_storage = m.parameters[0].data_ptr();
  // A training step: gradients appear and weights move (the traced batch norm keeps its eval-mode running
  // statistics, so they are moved by hand, as a train-mode trace would).
  const auto out = m.module.forward({make_inputs({parse_input_spec("4x3x32x32")}, 1)[0]}).toTensor();
  out.square().mean().backward();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : m.parameters) p.sub_(p.grad().defined() ? p.grad() : torch::ones_like(p));
  }
  int moved = 0;
  for (size_t i = 0; i < m.parameters.size(); ++i)
    moved += m.parameters[i].equal(fresh.parameters[i]) ? 0 : 1;
  ASSERT_EQ(moved, static_cast<int>(m.parameters.size()));  // every weight and every running statistic

  initial.restore(m);
  for (size_t i = 0; i < m.parameters.size(); ++i) {
    EXPECT_TRUE(m.parameters[i].equal(fresh.parameters[i])) << m.ir.parameters()[i].name;
    EXPECT_FALSE(m.parameters[i].grad().defined()) << m.ir.parameters()[i].name;
  }
  EXPECT_EQ(m.parameters[0].data_ptr(), first_storage);  // the same tensors: module and optimizers keep them

  LoadedModel other = load_model(zoo_model("mlp"));
  EXPECT_THROW(initial.restore(other), Error);
}

}  // namespace partita

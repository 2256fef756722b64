#include "partita/torch_bridge/gradient_check.h"

#include <gtest/gtest.h>

#include "partita/core/error.h"
#include "zoo.h"

namespace partita {

namespace {
struct Loaded {
  LoadedModel model;
  std::vector<InputSpec> specs;
};
Loaded load(const std::string& name, const char* input) {
  Loaded l{load_model(testing::zoo_model(name)), {parse_input_spec(input)}};
  annotate_shapes(l.model, l.specs);
  return l;
}
}  // namespace

TEST(GradientCheck, ZooModelsTrain) {
  for (const auto& [name, input] :
       {std::pair{"mlp", "4x64"}, {"cnn", "2x3x32x32"}, {"gpt", "2x16:i64:2048"}}) {
    const Loaded l = load(name, input);
    const auto missing = first_node_without_derivative(l.model, l.specs);
    EXPECT_FALSE(missing) << name << ": node " << missing->node << " " << missing->message;
    EXPECT_NO_THROW(check_trainable(l.model, l.specs)) << name;
  }
}

// A transformer layer traced in eval mode under no_grad is torch.nn's fused inference kernel: no derivative.
TEST(GradientCheck, FusedInferenceKernelIsNamed) {
  const Loaded l = load("fused_encoder", "2x8x16");
  const auto missing = first_node_without_derivative(l.model, l.specs);
  ASSERT_TRUE(missing);
  EXPECT_EQ(l.model.ir.node(missing->node).op, "aten::_transformer_encoder_layer_fwd");
  EXPECT_NE(missing->message.find("not implemented"), std::string::npos) << missing->message;
  try {
    check_trainable(l.model, l.specs);
    FAIL() << "check_trainable accepted a model without a derivative";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("fused_encoder.pt"), std::string::npos) << what;
    EXPECT_NE(what.find("node " + std::to_string(missing->node) + " aten::_transformer_encoder_layer_fwd"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("model.train()"), std::string::npos) << what;
  }
}

// Nothing to train, or a first output the loss cannot be computed from (partita's losses compare per-sample
// outputs with targets; a 0-d output crashed the baseline's target shape): refused naming the model.
TEST(GradientCheck, ModelsWithNothingToTrainOrNoPerSampleOutputAreRefused) {
  const auto refusal = [](const char* name) {
    const Loaded l = load(name, "8x16");
    try {
      check_trainable(l.model, l.specs);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  const std::string free = refusal("parameter_free");
  EXPECT_NE(free.find("parameter_free.pt: it has no parameter that requires a gradient"), std::string::npos)
      << free;
  const std::string own_loss = refusal("own_loss");
  EXPECT_NE(own_loss.find("own_loss.pt: its first output is a 0-d tensor"), std::string::npos) << own_loss;
  const std::string argmax = refusal("argmax_first");
  EXPECT_NE(argmax.find("argmax_first.pt: its first output is i64"), std::string::npos) << argmax;
  EXPECT_EQ(refusal("batch_centered"), "accepted");
  // An in-place write into a tensor a linear saved for its gradient: autograd refuses the backward (PyTorch's
  // own training too), named before anything is planned rather than as an internal error in a step.
  const std::string saved = refusal("writes_saved_input");
  EXPECT_NE(
      saved.find("writes_saved_input.pt: LibTorch's autograd refuses its backward (one of the variables "
                 "needed for gradient computation has been modified by an inplace operation"),
      std::string::npos)
      << saved;
  EXPECT_NE(saved.find("Make that write out of place"), std::string::npos) << saved;
}

}  // namespace partita

// partita verify: our executor against the TorchScript module, outputs (and gradients with --train); with
// --plan, also a plan's layout run by the engine (one forward of the batch) against one device's outputs.
#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <torch/torch.h>

#include "commands.h"
#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/core/log.h"
#include "partita/graph/analysis.h"
#include "partita/runtime/engine.h"
#include "partita/search/plan_json.h"
#include "partita/search/search_options.h"
#include "partita/torch_bridge/executor.h"
#include "partita/torch_bridge/gradient_check.h"
#include "partita/torch_bridge/timing.h"

namespace partita::app {

namespace {

struct VerifyArgs {
  ModelArgs model;
  bool train = false;
  int repeat = 0;
  double rtol = 1e-4;
  double atol = 1e-5;
  std::string plan;
  std::string json;
};

std::vector<torch::Tensor> flatten_tensors(const c10::IValue& iv) {
  if (iv.isTensor()) return {iv.toTensor()};
  std::vector<torch::Tensor> out;
  if (iv.isTuple()) {
    for (const auto& e : iv.toTupleRef().elements()) {
      auto inner = flatten_tensors(e);
      out.insert(out.end(), inner.begin(), inner.end());
    }
  } else if (iv.isList()) {
    for (const auto& e : iv.toListRef()) {
      auto inner = flatten_tensors(e);
      out.insert(out.end(), inner.begin(), inner.end());
    }
  } else if (iv.isGenericDict()) {  // a returned dict: partita's graph returns its values in this order
    for (const auto& e : iv.toGenericDict()) {
      auto inner = flatten_tensors(e.value());
      out.insert(out.end(), inner.begin(), inner.end());
    }
  }
  return out;
}

struct Comparison {
  double max_abs_diff = 0;       // over the positions finite on both sides
  bool close = true;             // allclose, NaN equal to NaN
  int64_t nonfinite_same = 0;    // NaN or the same Inf on both sides: the model's own (a NaN model output)
  int64_t nonfinite_one = 0;     // NaN or Inf on one side where the other has something else
  std::string dtype_difference;  // the first position whose dtypes differ ("output 1: Double vs Float")
};

// `a` is what partita computed, `b` the reference (named `reference` in messages).
void compare(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b,
             std::string_view reference, const VerifyArgs& args, Comparison& result) {
  PARTITA_ASSERT(a.size() == b.size(), "output counts differ: ", a.size(), " vs ", b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].defined() && !b[i].defined()) continue;
    PARTITA_ASSERT(a[i].defined() && b[i].defined(), "one side has no tensor at position ", i);
    PARTITA_ASSERT(a[i].sizes() == b[i].sizes(), "shapes differ at position ", i);
    if (a[i].scalar_type() != b[i].scalar_type()) {  // same values in another dtype are still not the model
      result.close = false;
      if (result.dtype_difference.empty()) {
        result.dtype_difference =
            fmt::format("tensor {} is {} here, {} in {}", i, c10::toString(a[i].scalar_type()),
                        c10::toString(b[i].scalar_type()), reference);
      }
    }
    if (a[i].numel() == 0) continue;
    const auto da = a[i].to(torch::kDouble), db = b[i].to(torch::kDouble);
    const auto finite_a = torch::isfinite(da), finite_b = torch::isfinite(db);
    const auto finite = finite_a.logical_and(finite_b);
    const auto same_nonfinite =
        finite.logical_not().logical_and(da.isnan().logical_and(db.isnan()).logical_or(da.eq(db)));
    result.nonfinite_same += same_nonfinite.sum().item<int64_t>();
    result.nonfinite_one += finite.logical_or(same_nonfinite).logical_not().sum().item<int64_t>();
    if (finite.any().item<bool>()) {
      result.max_abs_diff =
          std::max(result.max_abs_diff, (da - db).abs().masked_select(finite).max().item<double>());
    }
    result.close = result.close && torch::allclose(da, db, args.rtol, args.atol, /*equal_nan=*/true);
  }
}

// What a comparison's line adds: dtypes that differ, values that are not finite.
std::string comparison_notes(const Comparison& c) {
  std::string s;
  if (!c.dtype_difference.empty()) s += "; dtypes differ: " + c.dtype_difference;
  if (c.nonfinite_one > 0) s += fmt::format("; {} value(s) NaN or Inf on one side only", c.nonfinite_one);
  if (c.nonfinite_same > 0) {
    s += fmt::format("; {} value(s) NaN or Inf on both sides (the model's own output: compared where finite)",
                     c.nonfinite_same);
  }
  return s;
}

// A loss that touches every output element with a different weight, so gradients are non-trivial.
torch::Tensor probe_loss(const std::vector<torch::Tensor>& outputs) {
  torch::Tensor loss = torch::zeros({}, torch::kDouble);
  int64_t k = 0;
  for (const auto& o : outputs) {
    if (!o.defined() || !o.is_floating_point()) continue;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1234 + k++);
    const auto w = torch::randn(o.sizes(), gen, torch::TensorOptions().dtype(o.scalar_type()));
    loss = loss + (o * w).sum().to(torch::kDouble);
  }
  return loss;
}

std::vector<torch::Tensor> take_grads(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (!p.requires_grad()) continue;
    grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
  return grads;
}

void run_verify(const VerifyArgs& args) {
  check_output_path(args.json, "--json");
  const auto specs = args.model.specs();
  LoadedModel model =
      load_model(args.model.model, args.train ? ModuleMode::kTrain : ModuleMode::kEval, specs);
  annotate_shapes(model, specs);
  if (args.train) check_trainable(model, specs);
  const Executor executor(model);
  const auto input_tensors = make_inputs(specs, /*seed=*/7);
  const std::vector<c10::IValue> inputs(input_tensors.begin(), input_tensors.end());
  // A model that updates an input in place changes the caller's tensor under TorchScript (partita's executor
  // copies it): TorchScript then gets a fresh copy per call, so both always read the same values.
  const std::vector<bool> written = inputs_written_in_place(model.ir);
  const bool copy_inputs = std::find(written.begin(), written.end(), true) != written.end();
  // Both sides start from one random seed, so dropout in train mode draws the same masks in both (they run
  // the same ATen ops in the same order).
  constexpr uint64_t kSeed = 11;
  auto torchscript_forward = [&] {
    torch::manual_seed(kSeed);
    if (!copy_inputs) return model.module.forward(inputs);
    std::vector<c10::IValue> fresh;
    for (const auto& t : input_tensors) fresh.emplace_back(t.clone());
    return model.module.forward(fresh);
  };
  auto executor_forward = [&] {
    torch::manual_seed(kSeed);
    return executor.run(inputs);
  };

  Comparison outputs, grads;
  {
    torch::NoGradGuard no_grad;
    compare(flatten_tensors(executor_forward()[0]), flatten_tensors(torchscript_forward()), "TorchScript",
            args, outputs);
  }
  // The plan's layout, forward only (a training plan's too: its devices, stages and shares), on the same
  // batch, against one device: the engine splits, sends and gathers as `partita run` does; partita's executor
  // (checked against TorchScript above) runs the whole batch. Both sides run dropout as the identity and
  // batch norm on its running statistics, which a split batch would otherwise change by design.
  Comparison planned;
  std::string plan_label;
  if (!args.plan.empty()) {
    Plan plan = plan_from_json(read_json_file(args.plan));
    PARTITA_CHECK(plan.global_batch == spec_batch(specs), "plan '", args.plan, "' is for a batch of ",
                  plan.global_batch, " but --input gives ", spec_batch(specs),
                  "; pass the plan's batch or plan again");
    plan_label = fmt::format("plan {} ({}, {} device(s), {} microbatch(es))", args.plan,
                             strategy_name(plan.strategy), plan.used_devices().size(), plan.microbatches);
    plan.mode = Mode::kInference;
    for (Stage& st : plan.stages) {  // a training plan's memory savings have nothing to save in a forward
      st.checkpointing = Checkpointing::kNone;
      st.offload = Offload::kNone;
    }
    EngineOptions engine_options;
    engine_options.as_in_eval_without_draws = true;
    Engine engine(model, plan, engine_options);
    const std::vector<torch::Tensor> got = engine.step(StepInputs{input_tensors, {}}).outputs;
    torch::NoGradGuard no_grad;
    ExecutorOptions one_device;
    one_device.as_in_eval_without_draws = true;
    std::vector<torch::Tensor> expected;
    for (const auto& t : flatten_tensors(Executor(model, one_device).run(inputs)[0])) {
      if (t.defined()) expected.push_back(t);
    }
    PARTITA_CHECK(got.size() == expected.size(), "the plan's run returned ", got.size(),
                  " tensor(s) where the model returns ", expected.size());
    compare(got, expected, "one device", args, planned);
  }
  bool has_grads = false;
  if (args.train) {
    for (auto& p : model.parameters) {
      if (p.requires_grad() && p.grad().defined()) p.mutable_grad().zero_();
    }
    probe_loss(flatten_tensors(torchscript_forward())).backward();
    const auto reference = take_grads(model.parameters);
    probe_loss(flatten_tensors(executor_forward()[0])).backward();
    const auto ours = take_grads(model.parameters);
    compare(ours, reference, "TorchScript", args, grads);
    has_grads = !reference.empty();
  }

  std::vector<double> ours_ms, theirs_ms;
  if (args.repeat > 0) {
    torch::NoGradGuard no_grad;
    using Clock = std::chrono::steady_clock;
    auto time_ms = [](auto&& fn) {
      const auto t0 = Clock::now();
      fn();
      return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    };
    for (int i = 0; i < 3; ++i) {  // warm-up: TorchScript's profiling executor optimizes on early runs
      torchscript_forward();
      executor_forward();
    }
    for (int i = 0; i < args.repeat; ++i) {  // alternate so drift on a shared machine hits both alike
      theirs_ms.push_back(time_ms(torchscript_forward));
      ours_ms.push_back(time_ms(executor_forward));
    }
  }

  const bool ok = outputs.close && grads.close && planned.close;
  std::FILE* out = args.json == "-" ? stderr : stdout;  // keep stdout pure JSON with --json -
  fmt::print(out, "verify {}: outputs max |diff| = {:.3g}{}{}\n", args.model.model, outputs.max_abs_diff,
             outputs.close ? " (allclose)" : " (NOT close)", comparison_notes(outputs));
  if (args.train) {
    fmt::print(out, "  gradients of {} parameters: max |diff| = {:.3g}{}{}\n",
               std::count_if(model.parameters.begin(), model.parameters.end(),
                             [](const torch::Tensor& p) { return p.requires_grad(); }),
               grads.max_abs_diff, grads.close ? " (allclose)" : " (NOT close)", comparison_notes(grads));
  }
  if (!args.plan.empty()) {
    fmt::print(out, "  {}: outputs max |diff| = {:.3g}{}{}\n", plan_label, planned.max_abs_diff,
               planned.close ? " (allclose)" : " (NOT close)", comparison_notes(planned));
  }
  if (args.repeat > 0) {
    const double ours = median_of(ours_ms), theirs = median_of(theirs_ms);
    fmt::print(
        out,
        "  forward median of {} runs at {} thread(s): executor {:.3f} ms, TorchScript {:.3f} ms ({:+.1f}%)\n",
        args.repeat, at::get_num_threads(), ours, theirs, 100.0 * (ours / theirs - 1.0));
  }
  if (!args.json.empty()) {
    Json j;
    j["model"] = args.model.model;
    j["ok"] = ok;
    j["max_abs_diff"] = std::max({outputs.max_abs_diff, grads.max_abs_diff, planned.max_abs_diff});
    if (!args.plan.empty()) j["plan_max_abs_diff"] = planned.max_abs_diff;
    j["output_max_abs_diff"] = outputs.max_abs_diff;
    j["nonfinite_on_both_sides"] = outputs.nonfinite_same + grads.nonfinite_same + planned.nonfinite_same;
    j["nonfinite_on_one_side"] = outputs.nonfinite_one + grads.nonfinite_one + planned.nonfinite_one;
    if (args.train) {
      j["grad_max_abs_diff"] = grads.max_abs_diff;
      j["grads_compared"] = has_grads;
    }
    j["threads"] = at::get_num_threads();
    if (args.repeat > 0) {
      j["repeat"] = args.repeat;
      j["executor_ms"] = median_of(ours_ms);
      j["torchscript_ms"] = median_of(theirs_ms);
    }
    write_json_file(args.json, j);
  }
  const int64_t one_sided = outputs.nonfinite_one + grads.nonfinite_one + planned.nonfinite_one;
  PARTITA_CHECK(one_sided == 0, "verify failed for '", args.model.model, "': ", one_sided,
                " value(s) are NaN or Inf on one side and finite or another Inf on the other");
  for (const Comparison* c : {&outputs, &grads, &planned}) {
    PARTITA_CHECK(c->dtype_difference.empty(), "verify failed for '", args.model.model, "': dtypes differ (",
                  c->dtype_difference,
                  "), the values may agree but the model's outputs "
                  "are not reproduced");
  }
  PARTITA_CHECK(ok, "verify failed for '", args.model.model, "': max abs difference ",
                std::max({outputs.max_abs_diff, grads.max_abs_diff, planned.max_abs_diff}),
                " exceeds rtol=", args.rtol, " atol=", args.atol);
}

}  // namespace

Command register_verify(CLI::App& app) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* cmd =
      app.add_subcommand("verify", "run the model with partita's executor and TorchScript; compare");
  add_model_args(*cmd, args->model);
  cmd->add_flag("--train", args->train, "also compare every parameter gradient");
  cmd->add_option("--repeat", args->repeat, "time N forward passes of each (medians)")
      ->check(nonnegative_integer());
  cmd->add_option("--rtol", args->rtol, "relative tolerance")->check(nonnegative_number("1e-4"));
  cmd->add_option("--atol", args->atol, "absolute tolerance")->check(nonnegative_number("1e-5"));
  cmd->add_option("--plan", args->plan,
                  "also run this plan's layout (from partita plan --json) on the batch, forward only, and "
                  "compare its outputs");
  cmd->add_option("--json", args->json, "write results as JSON (- for stdout)");
  return Command{cmd, [args] { run_verify(*args); }};
}

}  // namespace partita::app

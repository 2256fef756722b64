#include "partita/torch_bridge/op_profiler.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <sstream>
#include <utility>

#include <fmt/format.h>
#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/core/log.h"
#include "partita/core/process_memory.h"
#include "partita/graph/op_names.h"
#include "partita/hardware/machine_profile.h"
#include "partita/torch_bridge/machine_fingerprint.h"

namespace partita {

namespace {

using Clock = std::chrono::steady_clock;

// Records every value the run produces, by value id.
class Recorder final : public ExecutionObserver {
 public:
  explicit Recorder(std::vector<c10::IValue>& values) : values_(values) {}
  void on_node_end(const Node& node, c10::ArrayRef<c10::IValue> outputs) override {
    for (size_t i = 0; i < node.outputs.size() && i < outputs.size(); ++i)
      values_[node.outputs[i]] = outputs[i];
  }

 private:
  std::vector<c10::IValue>& values_;
};

void describe(std::ostringstream& os, const c10::IValue& v, bool training) {
  if (v.isTensor()) {
    const auto& t = v.toTensor();
    os << c10::toString(t.scalar_type()) << t.sizes();
    if (!t.is_contiguous()) os << "nc" << t.strides();
    if (training && t.requires_grad()) os << "g";
  } else if (v.isList()) {
    os << "[";
    for (const auto& e : v.toListRef()) {
      describe(os, e, training);
      os << ",";
    }
    os << "]";
  } else {
    os << v;
  }
}

std::string cache_key(const Node& node, const std::vector<c10::IValue>& inputs, const OpProfileOptions& o) {
  std::ostringstream os;
  os << o.device_key << "|t" << at::get_num_threads() << "|" << (o.backward ? "train" : "infer") << "|"
     << node.op << (freed_memory_kept_in_process() ? "" : "|malloc-default") << "(";
  for (const auto& v : inputs) {
    describe(os, v, o.backward);
    os << ";";
  }
  os << ")";
  return os.str();
}

// A leaf copy of a recorded value for backward replay: tensors become detached leaves that require grad
// where the recorded ones did; lists are rebuilt element by element.
c10::IValue make_leaf(const c10::IValue& v, std::vector<torch::Tensor>& leaves) {
  if (v.isTensor()) {
    const auto& t = v.toTensor();
    if (!t.requires_grad()) return t.detach();
    torch::Tensor leaf = t.detach().requires_grad_(true);
    leaves.push_back(leaf);
    return leaf;
  }
  if (v.isTensorList()) {
    c10::List<at::Tensor> list;
    for (const auto& e : v.toTensorList())
      list.push_back(make_leaf(c10::IValue(at::Tensor(e)), leaves).toTensor());
    return list;
  }
  return v;
}

void collect_differentiable(const c10::IValue& v, std::vector<torch::Tensor>& out) {
  if (v.isTensor()) {
    const auto& t = v.toTensor();
    if (t.requires_grad() && t.is_floating_point()) out.push_back(t);
  } else if (v.isList()) {
    for (const auto& e : v.toListRef()) collect_differentiable(e, out);
  } else if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) collect_differentiable(e, out);
  }
}

// Inputs for one replay: in-place ops get a private copy of their first (mutated) argument.
std::vector<c10::IValue> fresh_inputs(const Node& node, const std::vector<c10::IValue>& recorded, bool leaves,
                                      std::vector<torch::Tensor>* leaf_out) {
  std::vector<c10::IValue> in;
  std::vector<torch::Tensor> ignored;
  for (const auto& v : recorded) in.push_back(leaves ? make_leaf(v, leaf_out ? *leaf_out : ignored) : v);
  if (is_in_place_op(node.op) && !in.empty() && in[0].isTensor()) in[0] = in[0].toTensor().clone();
  return in;
}

struct Timed {
  Seconds median{0};
  double spread = 0;  // (q3 - q1) / median of the samples
};

Timed summarize(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  Timed t;
  t.median = Seconds(median_of(samples));
  const size_t n = samples.size();
  if (n >= 2 && t.median.value() > 0)
    t.spread = (samples[(3 * n) / 4 < n ? (3 * n) / 4 : n - 1] - samples[n / 4]) / t.median.value();
  return t;
}

// Times `run` after an untimed `setup` each repeat, with the warm-up, repeat and budget rules of timing.
template <typename Setup, typename Run>
Timed time_with_setup(Setup setup, Run run, const TimingOptions& timing) {
  for (int i = 0; i < timing.warmup; ++i) {
    auto state = setup();
    run(state);
  }
  std::vector<double> samples;
  double spent = 0;
  while (
      static_cast<int>(samples.size()) < timing.max_repeats &&
      (static_cast<int>(samples.size()) < std::max(1, timing.min_repeats) || spent < timing.budget.value())) {
    auto state = setup();
    const auto t0 = Clock::now();
    run(state);
    if (timing.sync) timing.sync();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    samples.push_back(s);
    spent += s;
  }
  return summarize(std::move(samples));
}

struct Replay {
  std::vector<c10::IValue> inputs;
  std::vector<torch::Tensor> leaves;
  std::vector<torch::Tensor> outputs;
};

struct MeasuredNode {
  NodeTimes times;
  double forward_spread = 0;
  double backward_spread = 0;
};

MeasuredNode measure_node(const Executor& executor, const Node& node,
                          const std::vector<c10::IValue>& recorded, const OpProfileOptions& o) {
  MeasuredNode t;
  if (!o.backward) {
    torch::NoGradGuard no_grad;
    const Timed f = time_with_setup(
        [&] { return fresh_inputs(node, recorded, false, nullptr); },
        [&](std::vector<c10::IValue>& in) { (void)executor.run_node(node.id, std::move(in)); }, o.timing);
    t.times.forward = f.median;
    t.forward_spread = f.spread;
    return t;
  }
  torch::AutoGradMode grad_on(true);
  auto setup = [&] {
    Replay r;
    r.inputs = fresh_inputs(node, recorded, true, &r.leaves);
    return r;
  };
  const Timed f = time_with_setup(
      setup, [&](Replay& r) { (void)executor.run_node(node.id, std::move(r.inputs)); }, o.timing);
  t.times.forward = f.median;
  t.forward_spread = f.spread;
  // Backward: only when some input requires grad and some output is differentiable.
  Replay probe = setup();
  if (probe.leaves.empty()) return t;
  for (const auto& v : executor.run_node(node.id, probe.inputs)) collect_differentiable(v, probe.outputs);
  if (probe.outputs.empty()) return t;
  auto setup_backward = [&] {
    Replay r = setup();
    for (const auto& v : executor.run_node(node.id, r.inputs)) collect_differentiable(v, r.outputs);
    return r;
  };
  const Timed b = time_with_setup(
      setup_backward,
      [&](Replay& r) {
        std::vector<torch::Tensor> grads;
        for (const auto& out : r.outputs) grads.push_back(torch::ones_like(out));
        (void)torch::autograd::grad(r.outputs, r.leaves, grads, /*retain_graph=*/false,
                                    /*create_graph=*/false,
                                    /*allow_unused=*/true);
      },
      o.timing);
  t.times.backward = b.median;
  t.backward_spread = b.spread;
  return t;
}

// Times every node as it runs inside the whole model (same caches, allocator state, dispatch and thread
// pools as a real step): three untimed runs, then timed ones (at least in_situ_runs, more while the time
// budget lasts); per node the median. Training also times the backward as one call and returns its median:
// without an update, torch::autograd::grad of the floating outputs with respect to every leaf that requires
// grad (the model's .grad fields are left alone); with one, the caller's step as it runs (loss = sum of the
// floating outputs, .backward() into the parameters' .grad, then the update), each part timed on its own,
// with the parameters' values and .grad put back after every run, outside the clock.
struct InSitu {
  std::vector<double> forward;       // per node, seconds
  double backward = 0;               // whole graph, seconds
  double loss = 0;                   // with an update: building the loss
  double update = 0;                 // with an update: the update
  double forward_outside_nodes = 0;  // a forward's wall time minus its nodes' times (executor overhead)
};

class NodeClock final : public ExecutionObserver {
 public:
  explicit NodeClock(int nodes) : samples_(static_cast<size_t>(nodes)) {}
  void on_node_begin(const Node& /*node*/) override { begin_ = Clock::now(); }
  void on_node_end(const Node& node, c10::ArrayRef<c10::IValue> /*outputs*/) override {
    const double s = std::chrono::duration<double>(Clock::now() - begin_).count();
    samples_[static_cast<size_t>(node.id)].push_back(s);
    run_total_ += s;
  }
  std::vector<std::vector<double>>& samples() { return samples_; }
  // Sum of the node times since the last call (one run's).
  double take_run_total() { return std::exchange(run_total_, 0.0); }

 private:
  std::vector<std::vector<double>> samples_;
  Clock::time_point begin_;
  double run_total_ = 0;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The trainable parameters' values and .grad, put back by restore(): the in-situ update changes them.
class TrainableState {
 public:
  explicit TrainableState(const std::vector<torch::Tensor>& params) {
    torch::NoGradGuard no_grad;
    for (const auto& p : params) {
      if (!p.requires_grad()) continue;
      params_.push_back(p);
      values_.push_back(p.detach().clone());
      grads_.push_back(p.grad().defined() ? p.grad().detach().clone() : torch::Tensor());
    }
  }
  void restore() {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      params_[i].detach().copy_(values_[i]);
      // A copy: backward accumulates into a defined .grad in place.
      params_[i].mutable_grad() = grads_[i].defined() ? grads_[i].clone() : torch::Tensor();
    }
  }

 private:
  std::vector<torch::Tensor> params_, values_, grads_;
};

// The timed runs' samples of the parts that are not nodes.
struct RunSamples {
  std::vector<double> backward, loss, update;
  std::vector<double> forward_outside_nodes;
};

// One untimed or timed backward of the run's outputs (see InSitu); adds the timed parts to `out`.
// `values`: the graph's outputs, for the caller's loss (OpProfileOptions::in_situ_loss).
void run_backward(const Executor& executor, std::vector<torch::Tensor> outputs,
                  const std::vector<c10::IValue>& values, const OpProfileOptions& o, bool timed,
                  RunSamples& out) {
  const std::function<void()>& update = o.in_situ_update;
  std::vector<torch::Tensor> leaves;
  for (const auto& p : executor.parameters()) {
    if (p.requires_grad()) leaves.push_back(p);
  }
  if (outputs.empty() || leaves.empty()) return;
  if (!update) {
    std::vector<torch::Tensor> grads;
    for (const auto& t : outputs) grads.push_back(torch::ones_like(t));
    const auto t0 = Clock::now();
    (void)torch::autograd::grad(outputs, leaves, grads, /*retain_graph=*/false, /*create_graph=*/false,
                                /*allow_unused=*/true);
    if (timed) out.backward.push_back(seconds_since(t0));
    return;
  }
  const auto t0 = Clock::now();
  torch::Tensor loss;
  if (o.in_situ_loss) {
    loss = o.in_situ_loss(values);
  } else {
    for (const auto& t : outputs) loss = loss.defined() ? loss + t.sum() : t.sum();
  }
  const auto t1 = Clock::now();
  loss.backward();
  const auto t2 = Clock::now();
  update();
  const auto t3 = Clock::now();
  if (!timed) return;
  out.loss.push_back(std::chrono::duration<double>(t1 - t0).count());
  out.backward.push_back(std::chrono::duration<double>(t2 - t1).count());
  out.update.push_back(std::chrono::duration<double>(t3 - t2).count());
}

InSitu measure_in_situ(const Executor& executor, const std::vector<c10::IValue>& inputs,
                       const OpProfileOptions& o) {
  const Graph& g = executor.model().ir;
  InSitu out;
  out.forward.assign(static_cast<size_t>(g.num_nodes()), 0.0);
  if (g.num_nodes() == 0 || o.in_situ_runs <= 0) return out;
  torch::AutoGradMode grad_mode(o.backward);
  const bool update = o.backward && o.in_situ_update;
  std::optional<TrainableState> state;
  if (update) state.emplace(executor.parameters());
  NodeClock clock(g.num_nodes());
  RunSamples samples;
  constexpr int kWarmup = 3;  // the replays before leave caches and the allocator in another state
  double spent = 0;
  for (int r = 1 - kWarmup; r <= o.in_situ_max_runs; ++r) {
    const bool timed = r > 0;
    if (timed && r > o.in_situ_runs && spent >= o.in_situ_budget.value()) break;
    const auto t0 = Clock::now();
    std::vector<torch::Tensor> outputs;
    std::vector<c10::IValue> values;  // for in_situ_loss
    {
      Executor::Environment env = executor.make_environment(inputs);
      executor.run_nodes(0, g.num_nodes() - 1, env, timed ? &clock : nullptr);
      for (ValueId v : g.outputs()) collect_differentiable(env[static_cast<size_t>(v)], outputs);
      if (update && o.in_situ_loss)
        for (ValueId v : g.outputs()) values.push_back(env[static_cast<size_t>(v)]);
      // A real step frees the forward's values as backward goes; keep only what autograd saved.
    }
    // The forward's time outside the nodes: the environment, the executor's loop, releasing values.
    if (timed) samples.forward_outside_nodes.push_back(seconds_since(t0) - clock.take_run_total());
    if (o.backward) run_backward(executor, std::move(outputs), values, o, timed, samples);
    if (timed) spent += seconds_since(t0);
    if (state) state->restore();
    if (o.between_in_situ_runs) o.between_in_situ_runs(timed);
  }
  for (size_t n = 0; n < out.forward.size(); ++n) {
    if (!clock.samples()[n].empty()) out.forward[n] = median_of(clock.samples()[n]);
  }
  out.backward = median_of(samples.backward);
  out.loss = median_of(samples.loss);
  out.update = median_of(samples.update);
  out.forward_outside_nodes = std::max(0.0, median_of(samples.forward_outside_nodes));
  return out;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Whether a cached entry can stand for a measurement now (see the header's cache rules).
bool usable(const Json& e, const OpProfileOptions& o, double now) {
  // Every field a number (an entry of the first format has no spread; one damaged by hand may hold anything).
  if (!e.is_object()) return false;
  for (const char* f : {"forward", "backward", "forward_spread", "backward_spread", "measured_at"}) {
    if (!e.contains(f) || !e[f].is_number()) return false;
  }
  if (now - e["measured_at"].get<double>() > o.max_cache_age.value()) return false;
  const auto steady = [&](const char* time, const char* spread) {
    return e.value(spread, 0.0) <= o.max_cached_spread || e.value(time, 0.0) < o.min_recheck_time.value();
  };
  return steady("forward", "forward_spread") && steady("backward", "backward_spread");
}

constexpr int kCacheVersion = 3;

Json read_cache(const std::string& path) {
  if (path.empty() || !std::filesystem::exists(path)) return Json::object();
  try {
    Json j = read_json_file(path);
    // Version 3: times measured with freed memory kept in the process (process_memory.h); older entries
    // include page-fault costs that partita no longer pays.
    if (j.is_object() && j.contains("version") && j["version"] == kCacheVersion && j.contains("entries") &&
        j["entries"].is_object())
      return j["entries"];
  } catch (const Error& e) {
    log_warning(std::string("ignoring the unreadable op-time cache: ") + e.what());
  }
  return Json::object();
}

}  // namespace

void OpProfileOptions::validate() const {
  timing.validate();
  PARTITA_CHECK(!device_key.empty(), "op profiler: empty device key; pass the device id, e.g. 'cpu'");
  PARTITA_CHECK(max_cached_spread >= 0, "op profiler: max_cached_spread is ", max_cached_spread,
                "; give a relative spread >= 0 (0.25 = 25 %)");
  PARTITA_CHECK(in_situ_runs >= 0, "op profiler: in_situ_runs is ", in_situ_runs, "; give 0 or more");
  PARTITA_CHECK(in_situ_max_runs >= in_situ_runs, "op profiler: in_situ_max_runs is ", in_situ_max_runs,
                ", below in_situ_runs ", in_situ_runs, "; give at least as many");
  PARTITA_CHECK(in_situ_budget.value() >= 0, "op profiler: in_situ_budget is ", in_situ_budget.value(),
                " s; give 0 or more");
}

std::string default_op_cache_path() { return cache_dir() + "/ops-" + machine_fingerprint().key() + ".json"; }

OpProfileResult profile_ops(const Executor& executor, const std::vector<c10::IValue>& inputs,
                            const OpProfileOptions& options) {
  options.validate();
  const auto t0 = Clock::now();
  const Graph& g = executor.model().ir;
  std::vector<c10::IValue> recorded = executor.make_environment(inputs);
  {
    torch::AutoGradMode grad_mode(options.backward);
    Recorder recorder(recorded);
    Executor::Environment env = recorded;
    if (g.num_nodes() > 0) executor.run_nodes(0, g.num_nodes() - 1, env, &recorder);
  }
  Json cache = read_cache(options.cache_path);
  const double now = unix_now();
  OpProfileResult result;
  result.times.resize(static_cast<size_t>(g.num_nodes()));
  for (const Node& node : g.nodes()) {
    std::vector<c10::IValue> node_inputs;
    for (ValueId v : node.inputs) node_inputs.push_back(recorded[v]);
    const std::string key = cache_key(node, node_inputs, options);
    NodeTimes& t = result.times[static_cast<size_t>(node.id)];
    if (cache.contains(key) && usable(cache[key], options, now)) {
      t.forward = Seconds(cache[key]["forward"].get<double>());
      t.backward = Seconds(cache[key]["backward"].get<double>());
      ++result.cache_hits;
      continue;
    }
    if (cache.contains(key)) ++result.remeasured;
    const MeasuredNode m = measure_node(executor, node, node_inputs, options);
    t = m.times;
    cache[key] = Json{{"forward", t.forward.value()},
                      {"backward", t.backward.value()},
                      {"forward_spread", m.forward_spread},
                      {"backward_spread", m.backward_spread},
                      {"measured_at", unix_now()}};
    ++result.measured;
  }
  if (!options.cache_path.empty() && result.measured > 0) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(options.cache_path).parent_path(), ec);
    try {
      write_json_file(options.cache_path, Json{{"version", kCacheVersion}, {"entries", cache}});
    } catch (const Error& e) {
      log_warning(std::string("could not write the op-time cache: ") + e.what());
    }
  }
  if (options.in_situ_runs > 0) {
    // Replay gives each node's own cost; the in-situ pass gives what it costs inside the model. Forward: the
    // in-situ median per node. Backward: autograd runs the whole graph at once, so the in-situ total is split
    // over the nodes in proportion to their replayed backward times.
    const InSitu in_situ = measure_in_situ(executor, inputs, options);
    double replayed_backward = 0;
    for (const auto& t : result.times) replayed_backward += t.backward.value();
    const double backward_scale =
        replayed_backward > 0 && in_situ.backward > 0 ? in_situ.backward / replayed_backward : 1.0;
    for (size_t n = 0; n < result.times.size(); ++n) {
      result.replayed_forward += result.times[n].forward;
      result.times[n].forward = Seconds(in_situ.forward[n]);
      result.times[n].backward = result.times[n].backward * backward_scale;
    }
    result.replayed_backward = Seconds(replayed_backward);
    result.in_situ_backward = Seconds(in_situ.backward);
    result.in_situ_loss = Seconds(in_situ.loss);
    result.in_situ_update = Seconds(in_situ.update);
    result.in_situ_forward_outside_nodes = Seconds(in_situ.forward_outside_nodes);
  }
  result.seconds_taken = Seconds(std::chrono::duration<double>(Clock::now() - t0).count());
  log_info(fmt::format(
      "profiled {} node(s) ({} measured, {} of them again as noisy or old; {} from cache) in {:.1f} s",
      g.num_nodes(), result.measured, result.remeasured, result.cache_hits, result.seconds_taken.value()));
  return result;
}

}  // namespace partita

#include "partita/runtime/engine.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/optim.h>
#include <torch/torch.h>

#include "backward_from.h"
#include "channel.h"
#include "engine_branch.h"
#include "engine_tensor.h"
#include "ivalue_tensors.h"
#include "optimizer_parts.h"
#include "partita/core/error.h"
#include "partita/cost/update.h"
#include "partita/runtime/activation_offload.h"
#include "partita/runtime/blas_threads.h"
#include "partita/runtime/optimizer.h"
#include "partita/runtime/schedule.h"
#include "partita/runtime/stage_routing.h"
#include "partita/runtime/stage_transport.h"
#include "partita/torch_bridge/executor.h"
#include "replay_draws.h"
#include "spin_condition.h"

namespace partita {

namespace {

using Clock = std::chrono::steady_clock;

struct Message {
  std::vector<c10::IValue> values;
};
using MessageChannel = detail::Channel<Message>;
// Inference: messages one in-process channel holds before its sender waits (Impl::send_forward).
constexpr size_t kInferenceWaitingMessages = 1;

// Thrown inside a worker when another worker failed and closed the channels: not an error of its own.
struct Aborted {};

// Tells the reducer that a parameter's gradient of this backward is final: a post hook on the parameter's
// AccumulateGrad node (it runs once per backward, after the gradient was accumulated into .grad()).
class GradientReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  GradientReadyHook(GradientReducer* reducer, size_t index) : reducer_(reducer), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    reducer_->on_gradient_ready(index_);
    return outputs;
  }

 private:
  GradientReducer* reducer_;
  size_t index_;
};

}  // namespace

std::string_view blas_threads_name(BlasThreads policy) {
  switch (policy) {
    case BlasThreads::kAuto:
      return "auto";
    case BlasThreads::kLeave:
      return "leave";
    case BlasThreads::kOne:
      return "one";
  }
  return "?";
}

void EngineOptions::validate() const {
  PARTITA_CHECK(learning_rate > 0, "learning rate must be positive, got ", learning_rate);
  PARTITA_CHECK(local_replica >= -1, "local replica must be -1 (all) or a device index, got ", local_replica);
  PARTITA_CHECK(local_stage >= -1, "local stage must be -1 (all) or a stage index, got ", local_stage);
  PARTITA_CHECK(local_stage < 0 || local_replica < 0,
                "an engine runs either one replica or one stage of a multi-process plan, not both");
  PARTITA_CHECK(local_stage < 0 || transport != nullptr,
                "running one stage of a pipeline needs a transport to the other stages");
  PARTITA_CHECK(first_step >= 0, "the first step number must not be negative, got ", first_step);
}

struct Engine::Impl {
  enum class Layout { kPipeline, kData };
  struct Worker {
    int index = 0;  // position in workers (the TaskEvent worker id)
    int stage = 0;
    int replica = 0;       // index in the stage's device group
    int share_offset = 0;  // first sample of this replica inside a microbatch
    int share = 0;         // samples per microbatch
    DeviceBinding binding;
    std::unique_ptr<Executor> executor;
    // A tensor-parallel group's worker: the executor (the same parameters) that draws the random numbers of
    // replicated nodes, alike on every rank of the group (replay_draws.h).
    std::unique_ptr<Executor> group_draws;
    std::thread thread;
    // Per-step results.
    double loss = 0.0;
    OffloadedActivations offloaded;                   // saved tensors this worker's forwards copied to host
    std::vector<std::vector<torch::Tensor>> outputs;  // [microbatch] flattened graph outputs
  };
  // Per microbatch state a stage keeps between its forward and its backward.
  struct Pending {
    torch::Tensor loss;
    // [downstream stage] values sent, per value (their tensors with autograd history; a list's too)
    std::vector<std::vector<c10::IValue>> sent;
    // [upstream stage] values received, per value, every tensor in them (a list's too) a detached leaf
    std::vector<std::vector<c10::IValue>> leaves;
    std::vector<std::pair<ValueId, c10::IValue>> received;  // every received value, as received
    // A checkpointed stage: its generator's state before the forward (replay_draws.h).
    std::vector<torch::Tensor> draws;
  };

  LoadedModel& model;
  Plan plan;
  EngineOptions options;
  Layout layout = Layout::kPipeline;
  bool training = false;
  StageRouting routing;
  std::vector<Worker> workers;
  std::vector<DeviceBinding> bindings;
  std::vector<std::vector<int>> stage_workers;  // [stage] its in-process workers, in replica order
  // [upstream worker][downstream worker]: activations down, their gradients back up (in-process stages).
  std::vector<std::vector<std::unique_ptr<MessageChannel>>> forward_channels;
  std::vector<std::vector<std::unique_ptr<MessageChannel>>> backward_channels;
  // A pipeline across processes whose local stage runs on several devices (a hybrid plan, one process per
  // stage): the stage's first worker, the leader, alone talks to the other processes, in whole-microbatch
  // messages. It hands each other local worker its part of what arrives (from_leader) and puts their parts
  // (to_leader) together with its own before it sends. Indexed by worker; empty otherwise.
  std::vector<std::unique_ptr<MessageChannel>> to_leader, from_leader;
  std::vector<torch::Tensor> master_params;
  // One device of a tensor group per process: the master parameters other than the parts it holds (the
  // reducer sums these; a held part's gradient is whole on its device).
  std::vector<torch::Tensor> unheld_params;
  std::vector<torch::Tensor> shared_params;  // local_stage: trainable parameters that several stages use
  // Where the model's parameter tensors live while the engine runs (place_parameters). keeper[i]: the worker
  // whose device holds model parameter i itself (training; its only user, on memory of its own; the optimizer
  // updates it there), -1: the host. copies: host-kept trainable parameters copied to a worker's device
  // (gradients gathered into the host tensor, refreshed after each update).
  struct ParameterCopy {
    int worker = 0;
    size_t parameter = 0;  // index in model.parameters
    torch::Tensor tensor;
  };
  std::vector<int> keeper;
  std::vector<torch::Device> home;  // [model parameter] its device before the engine moved it
  std::vector<ParameterCopy> copies;
  std::shared_ptr<torch::optim::Optimizer> optimizer;
  std::vector<RuntimeObserver*> observers;
  LossKind loss_kind = LossKind::kAuto;
  int saved_blas_threads = -1;
  std::unique_ptr<detail::BranchRunner> branch;  // branch-parallel plans (engine_branch.h)
  std::unique_ptr<detail::TensorRunner> tensor;  // tensor-parallel plans (engine_tensor.h)
  // EngineOptions::inline_lone_worker: step() runs the one worker itself, on the thread it binds first.
  bool inline_worker = false;
  std::optional<std::thread::id> bound_thread;
  cpu_set_t saved_affinity{};
  bool saved_affinity_valid = false;
  int saved_intra_op_threads = 0;
  // Overlap of the gradient all-reduce with backward (one replica of a multi-process data-parallel plan): a
  // post hook on every trainable parameter's AccumulateGrad node; armed by the reducer for the last backward.
  bool overlap = false;
  bool overlap_armed = false;  // written by the worker, read by step() after the worker is done
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> grad_hooks;

  // Step dispatch.
  std::mutex mutex;
  detail::SpinCondition start_cv, done_cv;  // a step starts; a worker finished it
  int generation = 0;
  int running = 0;
  bool stopping = false;
  std::string first_error;
  const StepInputs* batch = nullptr;
  int step_index = 0;
  // Jobs for some workers (run_on_workers), posted as generation job_generation: a worker woken for that
  // generation (however late) runs its job, or goes back to waiting when it has none.
  std::vector<std::function<void()>> worker_jobs;  // [worker]; empty: none
  int job_generation = -1;
  // The worker that runs the optimizer step: the CPU worker with the most intra-op threads, of equals the
  // least slowed in the plan's source, then the first (-1: no CPU worker; the caller's thread runs it).
  int optimizer_worker = -1;
  // Unless the step is split among the CPU workers: a single-process plan whose devices are two or more
  // CPUs and an optimizer OptimizerParts can split. Part k runs on worker part_workers[k], the first worker
  // of the plan's k-th distinct device (Plan::used_devices() order); cost/update.h split_update, with threads
  // over the plan's device slowdown as speeds, says which parameter goes to which part, as the simulator
  // predicts (search/update_task.h). Made at the first training step, again when the optimizer's parameters
  // changed.
  std::vector<int> part_workers;
  std::unique_ptr<detail::OptimizerParts> optimizer_parts;

  Impl(LoadedModel& m, Plan p, EngineOptions o) : model(m), plan(std::move(p)), options(o) {}
  // After the workers stopped (Engine::~Engine), or when the constructor threw: kept parameters go home.
  ~Impl() {
    try {
      bring_parameters_home();
    } catch (const std::exception& e) {  // a destructor must not throw; the parameters stay where they are
      std::fprintf(stderr, "partita: could not move the model's parameters back: %s\n", e.what());
    }
  }

  void emit_begin(TaskEvent& e) {
    e.begin = Clock::now();
    for (auto* o : observers) o->on_task_begin(e);
  }
  void emit_end(TaskEvent& e) {
    e.end = Clock::now();
    for (auto* o : observers) o->on_task_end(e);
  }

  void fail(const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (first_error.empty()) first_error = message;
    }
    for (auto& row : forward_channels) {
      for (auto& c : row)
        if (c) c->close();
    }
    for (auto& row : backward_channels) {
      for (auto& c : row)
        if (c) c->close();
    }
    for (auto* side : {&to_leader, &from_leader}) {
      for (auto& c : *side)
        if (c) c->close();
    }
    if (branch) branch->abort();
    if (tensor) tensor->abort();
  }

  Message receive(MessageChannel& channel) {
    auto msg = channel.receive();
    if (!msg) throw Aborted{};
    return std::move(*msg);
  }

  // Forward activations to an in-process worker. In inference a sender waits while one message already waits
  // for the receiver, so a slower later stage holds at most one microbatch's inputs besides the one it runs
  // (unbounded, a fast first stage queued every microbatch's: branchy with 8 microbatches held 5.9-6.4 MiB
  // instead of 4.7; the simulator counts the one). Cannot deadlock: every worker takes its microbatches in
  // order, so the earliest unfinished (microbatch, stage) always finds its inputs sent and room to send.
  // Training leaves the channels unbounded (the schedules bound what is in flight).
  void send_forward(MessageChannel& channel, Message msg) {
    if (!channel.send(std::move(msg), training ? 0 : kInferenceWaitingMessages)) throw Aborted{};
  }

  // Tensors, numbers and lists or tuples of them travel between processes (stage_transport.h); refuse other
  // cuts (objects, dicts) before running.
  void check_values_can_cross_processes() const {
    const int stages = static_cast<int>(plan.stages.size());
    for (int p = 0; p < stages; ++p) {
      for (int t = p + 1; t < stages; ++t) {
        for (ValueId v : routing.sends[p][t]) {
          const Value& value = model.ir.value(v);
          PARTITA_CHECK(value.kind != ValueKind::kOther, "value '", value.name,
                        "' (not a tensor, a number or a list or tuple of them) crosses the cut from stage ",
                        p, " to stage ", t,
                        ", which cannot travel between processes; plan another cut or run "
                        "the pipeline in one process");
        }
      }
    }
  }

  // Hybrid plans: between stages whose groups are not both one device, every value must be batch-major
  // (split by samples) or not derived from the batch at all (the same on every device); refuse the rest
  // before running.
  void check_values_can_be_split() const {
    const int stages = static_cast<int>(plan.stages.size());
    for (int p = 0; p < stages; ++p) {
      for (int t = p + 1; t < stages; ++t) {
        if (!resharded(p, t)) continue;
        for (ValueId v : routing.sends[p][t]) {
          const Value& value = model.ir.value(v);
          PARTITA_CHECK(
              routing.hybrid_crossable[v], "value '", value.name, "' crosses from stage ", p, " to stage ", t,
              " of a hybrid plan but is not a tensor whose dimension 0 is the batch, so it cannot be ",
              "split between the stages' devices; plan another cut, or with --strategy pipeline or "
              "data");
        }
      }
    }
  }

  // A stage may not write in place into storage it would hold as separate copies (StageRouting::
  // split_storage_write): the write would miss the copies that later nodes read.
  void check_writes_reach_their_storage() const {
    if (!routing.split_storage_write) return;
    const auto& split = *routing.split_storage_write;
    std::string listed;
    for (ValueId v : split.copies) {
      const Value& value = model.ir.value(v);
      listed += std::string(listed.empty() ? "" : ", ") + "'" + value.name + "' (" +
                (value.producer == kNoNode ? std::string("its own copy of the input")
                                           : describe_node(model.ir.node(value.producer)) + " in stage " +
                                                 std::to_string(routing.stage_of_node[value.producer])) +
                ")";
    }
    PARTITA_FAIL("stage ", split.writer_stage, " writes in place into the storage of '",
                 model.ir.value(routing.storage_root[split.copies.front()]).name, "' (",
                 describe_node(model.ir.node(split.write)), ") but would hold it as ", split.copies.size(),
                 " separate copies: ", listed,
                 "; the write would not reach the copies that later nodes read. Cut the model elsewhere "
                 "(partita plan chooses its own cuts) or keep these nodes in one stage");
  }

  // Whether `stage` runs in another process (EngineOptions::local_stage).
  bool remote(int stage) const { return options.local_stage >= 0 && stage != options.local_stage; }

  // Stage `receiver` takes what stage `sender` sent it for microbatch m (`count` values): from an in-process
  // channel, or through the transport from another process (a one-device local stage). Between in-process
  // stages of one device each; hybrid links go device by device (receive_gradients, send_gradients), and
  // other processes' messages through receive_remote / send_remote.
  Message receive_message(int sender, int receiver, int m, bool backward, size_t count) {
    if (remote(sender)) return Message{options.transport->receive({sender, receiver, m, backward}, count)};
    const int a = stage_workers[sender][0], b = stage_workers[receiver][0];
    return receive(backward ? *backward_channels[b][a] : *forward_channels[a][b]);
  }
  void send_message(int sender, int receiver, int m, bool backward, Message msg) {
    if (remote(receiver)) {
      options.transport->send(msg.values, {sender, receiver, m, backward});
      return;
    }
    const int a = stage_workers[sender][0], b = stage_workers[receiver][0];
    if (backward) {
      backward_channels[b][a]->send(std::move(msg));
    } else {
      send_forward(*forward_channels[a][b], std::move(msg));
    }
  }

  // Pipelines across processes, local stage on several devices (see to_leader): whether w talks to the other
  // processes for its stage.
  bool leader(const Worker& w) const { return stage_workers[w.stage][0] == w.index; }
  bool lone_local_stage(const Worker& w) const { return stage_workers[w.stage].size() == 1; }

  // What local worker w takes of a whole-microbatch message (`values` its routing) from another process: the
  // rows it holds of batch-major values; any other value whole going forward and, backward (the gradients of
  // values w's stage sent), only on the stage's first device, which alone sent it (in-process hybrid links
  // do the same).
  Message part_for(const Worker& w, const Message& whole, const std::vector<ValueId>& values,
                   bool backward) const {
    Message part;
    for (size_t k = 0; k < values.size(); ++k) {
      const c10::IValue& iv = whole.values.at(k);
      if (routing.batch_major[values[k]]) {
        const bool defined = iv.isTensor() && iv.toTensor().defined();
        part.values.emplace_back(defined ? c10::IValue(iv.toTensor().narrow(0, w.share_offset, w.share))
                                         : c10::IValue());
      } else {
        part.values.push_back(backward && w.replica != 0 ? c10::IValue() : iv);
      }
    }
    return part;
  }

  // The leader's message for another process, put together from every local worker's part (parts in
  // stage_workers order): batch-major values' rows in sample order (backward: zeros where a device computed
  // no gradient), any other value the first device's going forward and the sum of the gradients backward.
  Message combine_parts(int stage, const std::vector<Message>& parts, const std::vector<ValueId>& values,
                        bool backward) const {
    const auto tensor_of = [](const c10::IValue& iv) {
      return iv.isTensor() && iv.toTensor().defined() ? iv.toTensor().to(torch::kCPU) : torch::Tensor();
    };
    Message whole;
    for (size_t k = 0; k < values.size(); ++k) {
      if (!routing.batch_major[values[k]]) {
        if (!backward) {
          whole.values.push_back(parts[0].values.at(k));
          continue;
        }
        torch::Tensor sum;
        for (const Message& part : parts) {
          const torch::Tensor g = tensor_of(part.values.at(k));
          if (g.defined()) sum = sum.defined() ? sum + g : g;
        }
        whole.values.emplace_back(sum.defined() ? c10::IValue(sum) : c10::IValue());
        continue;
      }
      std::vector<torch::Tensor> pieces;
      torch::Tensor like;
      for (size_t i = 0; i < parts.size(); ++i) {
        const Worker& holder = workers[static_cast<size_t>(stage_workers[stage][i])];
        pieces.push_back(tensor_of(parts[i].values.at(k)));
        if (!pieces.back().defined()) continue;
        PARTITA_CHECK(pieces.back().dim() >= 1 && pieces.back().size(0) == holder.share, "stage ", stage,
                      " on ", holder.binding.id, ": value '", model.ir.value(values[k]).name,
                      "' should hold this device's ", holder.share,
                      " samples along dimension 0 to cross to another process, but does not; plan with "
                      "--strategy pipeline or data");
        like = pieces.back();
      }
      if (!like.defined()) {  // no device computed a gradient for it
        whole.values.emplace_back();
        continue;
      }
      for (size_t i = 0; i < pieces.size(); ++i) {
        if (pieces[i].defined()) continue;
        std::vector<int64_t> shape = like.sizes().vec();
        shape[0] = workers[static_cast<size_t>(stage_workers[stage][i])].share;
        pieces[i] = torch::zeros(shape, like.options());
      }
      whole.values.emplace_back(pieces.size() == 1 ? pieces[0] : torch::cat(pieces, 0));
    }
    return whole;
  }

  // Local worker w's part of what stage `from` (in another process) sent its stage for microbatch m.
  Message receive_remote(const Worker& w, int from, int m, bool backward, size_t count) {
    const auto& values = backward ? routing.sends[w.stage][from] : routing.sends[from][w.stage];
    if (lone_local_stage(w)) return Message{options.transport->receive({from, w.stage, m, backward}, count)};
    if (!leader(w)) return receive(*from_leader[static_cast<size_t>(w.index)]);
    const Message whole{options.transport->receive({from, w.stage, m, backward}, count)};
    for (size_t i = 1; i < stage_workers[w.stage].size(); ++i) {
      const Worker& other = workers[static_cast<size_t>(stage_workers[w.stage][i])];
      from_leader[static_cast<size_t>(other.index)]->send(part_for(other, whole, values, backward));
    }
    return part_for(w, whole, values, backward);
  }

  // Sends local worker w's part of what its stage sends stage `to` (in another process) for microbatch m.
  void send_remote(const Worker& w, int to, int m, bool backward, Message mine) {
    if (lone_local_stage(w)) {
      options.transport->send(mine.values, {w.stage, to, m, backward});
      return;
    }
    if (!leader(w)) {
      to_leader[static_cast<size_t>(w.index)]->send(std::move(mine));
      return;
    }
    std::vector<Message> parts;
    parts.push_back(std::move(mine));
    for (size_t i = 1; i < stage_workers[w.stage].size(); ++i) {
      parts.push_back(receive(*to_leader[static_cast<size_t>(stage_workers[w.stage][i])]));
    }
    const auto& values = backward ? routing.sends[to][w.stage] : routing.sends[w.stage][to];
    options.transport->send(combine_parts(w.stage, parts, values, backward).values,
                            {w.stage, to, m, backward});
  }

  // Hybrid plans: stages p < t whose groups are not both one device exchange values device by device. A
  // batch-major value (StageRouting::batch_major) travels as the samples the two devices both hold; any
  // other value is the same on every device of the sending group (not derived from the batch: the
  // constructor refuses the rest) and comes from its first device, which therefore sends to every device.
  bool resharded(int p, int t) const {
    const auto devices = [&](int s) { return plan.groups[plan.stages[s].group].devices.size(); };
    return devices(p) > 1 || devices(t) > 1;
  }
  // Samples [first, second) of a microbatch that both workers hold (empty: first >= second).
  static std::pair<int, int> shared_samples(const Worker& a, const Worker& b) {
    return {std::max(a.share_offset, b.share_offset),
            std::min(a.share_offset + a.share, b.share_offset + b.share)};
  }
  static bool linked(const Worker& up, const Worker& down) {
    const auto [lo, hi] = shared_samples(up, down);
    return lo < hi || up.replica == 0;
  }
  // The rows of `t` (holding worker `holder`'s samples) that `other` holds too.
  static torch::Tensor rows_for(const torch::Tensor& t, const Worker& holder, const Worker& other) {
    const auto [lo, hi] = shared_samples(holder, other);
    return t.narrow(0, std::min(lo, holder.share_offset + holder.share) - holder.share_offset,
                    std::max(0, hi - lo));
  }
  torch::Tensor batch_rows(const c10::IValue& iv, ValueId v, const Worker& holder) const {
    PARTITA_CHECK(iv.isTensor() && iv.toTensor().dim() >= 1 && iv.toTensor().size(0) == holder.share,
                  "stage ", holder.stage, " on ", holder.binding.id, ": value '", model.ir.value(v).name,
                  "' should hold this device's ", holder.share,
                  " samples along dimension 0 to cross to the next stage's devices, but does not; plan with "
                  "--strategy pipeline or data");
    return iv.toTensor();
  }

  // What worker w takes of user input `input` for a microbatch: its samples' rows, or a shared input
  // (Value::shared) whole.
  torch::Tensor slice(const torch::Tensor& t, size_t input, const Worker& w, int microbatch) const {
    if (model.ir.value(model.ir.inputs()[input]).shared) return t.to(w.binding.device);
    const int64_t offset = static_cast<int64_t>(microbatch) * plan.microbatch_size() + w.share_offset;
    return t.narrow(0, offset, w.share).to(w.binding.device);
  }

  // The environment of one stage run: user inputs (this worker's slice), parameters, constants, and the
  // values received from earlier stages. A received value that the stage updates in place is given as a copy
  // that carries autograd history back to the received leaf (in-place on a leaf that requires grad is an
  // error, and a checkpointed stage must be able to run again from pristine inputs).
  Executor::Environment stage_environment(const Worker& w, int m, const Pending& state) const {
    std::vector<c10::IValue> inputs;
    for (size_t i = 0; i < batch->inputs.size(); ++i) inputs.emplace_back(slice(batch->inputs[i], i, w, m));
    Executor::Environment env = w.executor->make_environment(inputs);
    for (const auto& [value, iv] : state.received) {
      env[value] = iv.isTensor() && routing.mutated[w.stage][value] ? c10::IValue(iv.toTensor().clone()) : iv;
    }
    return env;
  }

  // A worker with memory of its own (a GPU; a CPU worker with EngineOptions::cpu_parameter_copies) reads
  // parameters from its own memory; the others read the host's.
  bool own_memory(const Worker& w) const {
    return !w.binding.device.is_cpu() || options.cpu_parameter_copies;
  }

  // Decides where each model parameter lives (keeper, copies), moves the kept ones to their worker's device
  // (with their optimizer state: a handed-over optimizer may have some) and builds every worker's executor.
  // A parameter stays on the host when several workers read it (replicas, stages sharing it), when the
  // reducer combines it with other processes, when its stage offloads optimizer state, or in inference
  // (the model's tensors are left alone; own-memory workers get copies of what their stage reads).
  void place_parameters() {
    const size_t count = model.parameters.size();
    const std::vector<std::vector<int>> stages_of = plan.parameter_stages(model.ir);
    keeper.assign(count, -1);
    home.clear();
    for (const auto& p : model.parameters) home.push_back(p.device());
    std::vector<std::vector<bool>> reads(workers.size(), std::vector<bool>(count, false));
    for (size_t i = 0; i < count; ++i) {
      std::vector<int> users;
      for (const auto& w : workers) {
        if (!std::binary_search(stages_of[i].begin(), stages_of[i].end(), w.stage)) continue;
        reads[static_cast<size_t>(w.index)][i] = true;
        users.push_back(w.index);
      }
      const torch::Tensor& p = model.parameters[i];
      const bool shared = std::any_of(shared_params.begin(), shared_params.end(),
                                      [&](const torch::Tensor& t) { return t.is_same(p); });
      const bool reduced =
          p.requires_grad() && options.reducer != nullptr && (options.local_stage < 0 || shared);
      if (!training || reduced || users.size() != 1) continue;
      const Worker& w = workers[static_cast<size_t>(users[0])];
      if (!own_memory(w)) continue;
      if (p.requires_grad() && offloads_optimizer_state(plan.stages[w.stage].offload)) continue;
      keeper[i] = w.index;
    }
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < count; ++i) {
      if (keeper[i] < 0) continue;
      move_home_of(i, workers[static_cast<size_t>(keeper[i])].binding.device);
    }
    for (auto& w : workers) {
      std::vector<torch::Tensor> params;
      for (size_t i = 0; i < count; ++i) {
        const torch::Tensor& p = model.parameters[i];
        if (!own_memory(w) || keeper[i] == w.index || !reads[static_cast<size_t>(w.index)][i]) {
          params.push_back(p);  // a stage never touches the parameters it does not read
          continue;
        }
        torch::Tensor copy = device_copy(p, w.binding.device);
        if (training && p.requires_grad()) {
          copy.requires_grad_();
          copies.push_back(ParameterCopy{w.index, i, copy});
        }
        params.push_back(std::move(copy));
      }
      // Random draws (replay_draws.h): a replica draws its own. In a tensor group, the rank's own generator
      // (places past every replica's) draws for split outputs, and the group's, seeded as its first device
      // would be, for replicated ones: the same as one device's for a group of the stage's first replica.
      const int degree = plan.groups[plan.stages[w.stage].group].tensor_degree();
      const auto generator = [&](int place) {
        return detail::worker_generator(w.binding.device, options.random_seed, w.stage, place,
                                        options.first_step);
      };
      if (degree > 1) {
        w.group_draws = std::make_unique<Executor>(
            model, ExecutorOptions{w.binding.device, params, options.as_in_eval_without_draws,
                                   generator(w.replica / degree)});
      }
      const int own = degree > 1 ? 4096 + w.replica : w.replica;
      w.executor = std::make_unique<Executor>(
          model, ExecutorOptions{w.binding.device, std::move(params), options.as_in_eval_without_draws,
                                 generator(own)});
    }
  }

  static torch::Tensor device_copy(const torch::Tensor& t, torch::Device device) {
    return t.detach().to(t.options().device(device), /*non_blocking=*/false, /*copy=*/true);
  }

  // Puts model parameter i's data (and its optimizer state) on `device`, keeping the tensor itself: the
  // optimizer, the TorchScript module and the caller's handles stay valid.
  void move_home_of(size_t i, torch::Device device) {
    torch::Tensor& p = model.parameters[i];
    p.set_data(device_copy(p, device));
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
    if (optimizer && p.requires_grad()) move_parameter_state(*optimizer, p, device);
  }

  // The engine's end: kept parameters go back to where they were.
  void bring_parameters_home() {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < keeper.size(); ++i) {
      if (keeper[i] >= 0) move_home_of(i, home[i]);
    }
    keeper.assign(keeper.size(), -1);
  }

  // Training, after every worker's backward: gradients of the device copies go into the host tensors.
  void gather_copied_gradients() {
    torch::NoGradGuard no_grad;
    for (auto& c : copies) {
      torch::Tensor& grad = c.tensor.mutable_grad();
      if (!grad.defined()) continue;
      torch::Tensor& master = model.parameters[c.parameter];
      if (master.grad().defined()) {
        master.mutable_grad().add_(grad.to(master.device()));
      } else {
        master.mutable_grad() = grad.to(master.device(), /*non_blocking=*/false, /*copy=*/true);
      }
      grad = torch::Tensor();
    }
  }

  // Training, after the optimizer step: device copies take the updated host values.
  void refresh_copies() {
    torch::NoGradGuard no_grad;
    for (auto& c : copies) c.tensor.copy_(model.parameters[c.parameter]);
  }

  // Activation offload for this worker's stage (training only: inference saves nothing for backward).
  bool offloads(const Worker& w) const {
    return training && offloads_activations(plan.stages[w.stage].offload);
  }

  // The tensors a stage holds until its backward whatever its forward saves (parameters, constants, values
  // received from other stages), given before the stage runs: autograd's saved copies of them would free no
  // device memory, so activation offload leaves them where they are. The step's input slices are offloaded.
  std::vector<torch::Tensor> held_tensors(const Executor::Environment& env) const {
    const auto& inputs = model.ir.inputs();
    std::vector<torch::Tensor> held;
    for (size_t v = 0; v < env.size(); ++v) {
      if (!env[v].isTensor()) continue;
      if (std::find(inputs.begin(), inputs.end(), static_cast<ValueId>(v)) != inputs.end()) continue;
      held.push_back(env[v].toTensor());
    }
    return held;
  }

  // Every executor that draws random numbers, in worker order (a tensor group's worker: its own, then the
  // group's), named as in draw_states.h.
  struct DrawingExecutor {
    std::string name;
    const Executor* executor;
  };
  std::vector<DrawingExecutor> drawing_executors() const {
    std::vector<DrawingExecutor> out;
    for (const Worker& w : workers) {
      out.push_back({draw_state_name(w.stage, w.replica, false), w.executor.get()});
      if (w.group_draws) out.push_back({draw_state_name(w.stage, w.replica, true), w.group_draws.get()});
    }
    return out;
  }

  void run_stage(const Worker& w, Executor::Environment& env) const {
    const Stage& stage = plan.stages[w.stage];
    try {
      w.executor->run_nodes(stage.first, stage.last, env);
    } catch (const Error& err) {
      throw Error("stage " + std::to_string(w.stage) + " on " + w.binding.id + ": " + err.what());
    }
  }

  std::vector<torch::Tensor> graph_outputs(const Executor::Environment& env) const {
    std::vector<torch::Tensor> outs;
    for (ValueId v : model.ir.outputs()) {
      for (auto& t : detail::flatten_tensors(env[v])) outs.push_back(t);
    }
    return outs;
  }

  // What backward needs from a forward run: the tensors sent downstream (with history) and, on the last
  // stage, the loss.
  void keep_for_backward(const Worker& w, int m, const Executor::Environment& env, Pending& state) const {
    const int stages = static_cast<int>(plan.stages.size());
    state.sent.assign(stages, {});
    for (int t = w.stage + 1; t < stages; ++t) {
      for (ValueId v : routing.sends[w.stage][t]) {
        state.sent[t].push_back(env[v]);
      }
    }
    if (w.stage != stages - 1) return;
    const auto outs = graph_outputs(env);
    PARTITA_CHECK(!outs.empty() && outs[0].is_floating_point(),
                  "training needs a floating-point model output");
    const int64_t first = static_cast<int64_t>(m) * plan.microbatch_size() + w.share_offset;
    state.loss =
        slice_loss(loss_kind, outs[0],
                   slice_targets(batch->targets, plan.global_batch, first, w.share).to(w.binding.device),
                   plan.global_batch);
  }

  void forward(Worker& w, int m, std::vector<Pending>& pending) {
    const int stages = static_cast<int>(plan.stages.size());
    Pending& state = pending[m];
    state.leaves.assign(stages, {});
    state.received.clear();
    // Tensors inside lists and tuples too (aten::split's list): one with upstream history would make this
    // stage's backward run (and free) the upstream stage's graph.
    const auto as_leaf = [&](const torch::Tensor& t) {
      if (!t.defined()) return t;
      torch::Tensor leaf = t.to(w.binding.device).detach();
      if (training && leaf.is_floating_point()) leaf.requires_grad_();
      return leaf;
    };
    for (int p = 0; p < w.stage; ++p) {
      const auto& values = routing.sends[p][w.stage];
      if (values.empty()) continue;
      if (remote(p) || !resharded(p, w.stage)) {
        Message msg = remote(p) ? receive_remote(w, p, m, /*backward=*/false, values.size())
                                : receive_message(p, w.stage, m, /*backward=*/false, values.size());
        for (size_t i = 0; i < values.size(); ++i) {
          c10::IValue iv = detail::map_tensors(msg.values[i], as_leaf);
          state.leaves[p].push_back(iv);
          state.received.emplace_back(values[i], std::move(iv));
        }
        continue;
      }
      std::vector<Message> got;  // from each linked device of stage p, in sample order; got[0]: its first
      for (int i : stage_workers[p]) {
        if (linked(workers[i], w)) got.push_back(receive(*forward_channels[i][w.index]));
      }
      for (size_t k = 0; k < values.size(); ++k) {
        c10::IValue iv;
        if (routing.batch_major[values[k]]) {
          std::vector<torch::Tensor> pieces;
          for (const Message& msg : got) {
            const torch::Tensor& piece = msg.values[k].toTensor();
            if (piece.size(0) > 0) pieces.push_back(piece.to(w.binding.device));
          }
          iv = as_leaf(pieces.size() == 1 ? pieces[0] : torch::cat(pieces, 0));
        } else {
          iv = detail::map_tensors(got[0].values[k], as_leaf);
        }
        state.leaves[p].push_back(iv);
        state.received.emplace_back(values[k], std::move(iv));
      }
    }
    // A checkpointed stage keeps only its inputs: forward without autograd now, again with it in backward.
    const bool checkpointed = training && plan.stages[w.stage].checkpointing == Checkpointing::kFull;
    Executor::Environment env = stage_environment(w, m, state);
    // Inference needs nothing received after this forward: let the executor free each input at its last
    // reader (held here, every microbatch's inputs stayed alive until the step ended).
    if (!training) {
      state.leaves.clear();
      state.received.clear();
    }
    // Activation offload covers the stage's forward and, on the last stage, the loss. (Plan::check_against
    // refuses it on a checkpointed stage, whose first forward saves nothing.)
    std::optional<ActivationOffloadScope> offload;
    if (!checkpointed && offloads(w)) offload.emplace(held_tensors(env), w.offloaded);
    TaskEvent e{EngineTaskKind::kForward, w.stage, w.index, w.binding.id, m, step_index, {}, {}};
    emit_begin(e);
    {
      std::optional<torch::NoGradGuard> no_grad;
      if (checkpointed) {
        no_grad.emplace();
        state.draws = detail::draws_state({w.executor.get()});
      }
      run_stage(w, env);
    }
    emit_end(e);
    if (training && !checkpointed) keep_for_backward(w, m, env, state);
    offload.reset();
    for (int t = w.stage + 1; t < stages; ++t) {
      const auto& values = routing.sends[w.stage][t];
      if (values.empty()) continue;
      const auto to = [](c10::IValue iv, torch::Device dest) {
        if (iv.isTensor() && iv.toTensor().device() != dest) iv = iv.toTensor().to(dest);
        return iv;
      };
      if (remote(t) || !resharded(w.stage, t)) {
        // A remote stage's tensors travel via the host.
        const torch::Device dest =
            remote(t) ? torch::Device(torch::kCPU) : workers[stage_workers[t][0]].binding.device;
        Message msg;
        for (ValueId v : values) msg.values.push_back(to(env[v], dest));
        if (remote(t)) {
          send_remote(w, t, m, /*backward=*/false, std::move(msg));
        } else {
          send_message(w.stage, t, m, /*backward=*/false, std::move(msg));
        }
        continue;
      }
      for (int j : stage_workers[t]) {
        const Worker& r = workers[j];
        if (!linked(w, r)) continue;
        Message msg;
        for (ValueId v : values) {
          msg.values.push_back(routing.batch_major[v] ? c10::IValue(rows_for(batch_rows(env[v], v, w), w, r))
                                                      : env[v]);
          msg.values.back() = to(std::move(msg.values.back()), r.binding.device);
        }
        send_forward(*forward_channels[w.index][j], std::move(msg));
      }
    }
    if (w.stage == stages - 1 && !training) w.outputs[m] = graph_outputs(env);
  }

  // Hybrid plans, backward: the gradients of what upstream worker w sent to stage t's devices, one per
  // value as from a one-device stage, on w's device: a batch-major value's rows from the devices holding
  // them (zeros where a device had none), any other value's gradients summed (only w's group's first device
  // gets them). Needs nothing kept from the forward (a checkpointed stage recomputes it afterwards).
  Message receive_gradients(const Worker& w, int t) {
    const auto& values = routing.sends[w.stage][t];
    std::vector<std::pair<int, Message>> got;  // rows of w's samples each device holds, its message
    for (int j : stage_workers[t]) {
      if (!linked(w, workers[j])) continue;
      const auto [lo, hi] = shared_samples(w, workers[j]);
      got.emplace_back(std::max(0, hi - lo), receive(*backward_channels[w.index][j]));
    }
    const auto tensor_of = [&](const c10::IValue& iv) {
      return iv.isTensor() && iv.toTensor().defined() ? iv.toTensor().to(w.binding.device) : torch::Tensor();
    };
    Message whole;
    for (size_t k = 0; k < values.size(); ++k) {
      torch::Tensor grad;
      if (routing.batch_major[values[k]]) {
        std::vector<torch::Tensor> pieces;  // undefined where that device had no gradient
        torch::Tensor like;
        for (const auto& [rows, msg] : got) {
          if (rows == 0) continue;
          pieces.push_back(tensor_of(msg.values[k]));
          if (pieces.back().defined()) like = pieces.back();
        }
        if (like.defined()) {
          size_t i = 0;
          for (const auto& [rows, msg] : got) {
            if (rows == 0) continue;
            torch::Tensor& piece = pieces[i++];
            if (piece.defined()) continue;
            std::vector<int64_t> shape = like.sizes().vec();
            shape[0] = rows;
            piece = torch::zeros(shape, like.options());
          }
          grad = pieces.size() == 1 ? pieces[0] : torch::cat(pieces, 0);
        }
      } else {
        for (const auto& [rows, msg] : got) {
          const torch::Tensor g = tensor_of(msg.values[k]);
          if (g.defined()) grad = grad.defined() ? grad + g : g;
        }
      }
      whole.values.emplace_back(grad.defined() ? c10::IValue(grad) : c10::IValue());
    }
    return whole;
  }

  // Hybrid plans, backward: downstream worker w hands each linked device of stage p the gradients of what
  // it received from it (receive_gradients puts them together).
  template <typename GradOf>
  void send_gradients(const Worker& w, int p, const Pending& state, const GradOf& grad_of) {
    const auto& values = routing.sends[p][w.stage];
    for (int i : stage_workers[p]) {
      const Worker& u = workers[i];
      if (!linked(u, w)) continue;
      Message msg;
      for (size_t k = 0; k < values.size(); ++k) {
        const c10::IValue& leaf = state.leaves[p][k];
        torch::Tensor g = leaf.isTensor() ? grad_of(leaf.toTensor()) : torch::Tensor();
        if (g.defined() && routing.batch_major[values[k]]) {
          g = rows_for(g, w, u);
        } else if (u.replica != 0) {
          g = torch::Tensor();
        }
        msg.values.emplace_back(g.defined() ? c10::IValue(g.to(u.binding.device)) : c10::IValue());
      }
      backward_channels[i][w.index]->send(std::move(msg));
    }
  }

  void backward(Worker& w, int m, std::vector<Pending>& pending) {
    const int stages = static_cast<int>(plan.stages.size());
    Pending& state = pending[m];
    TaskEvent e{EngineTaskKind::kBackward, w.stage, w.index, w.binding.id, m, step_index, {}, {}};
    std::vector<torch::Tensor> tensors, grads;
    std::vector<Message> from_downstream(stages);
    for (int t = w.stage + 1; t < stages; ++t) {
      const size_t count = routing.sends[w.stage][t].size();
      if (count == 0) continue;
      if (remote(t)) {
        from_downstream[t] = receive_remote(w, t, m, /*backward=*/true, count);
      } else if (!resharded(w.stage, t)) {
        from_downstream[t] = receive_message(t, w.stage, m, /*backward=*/true, count);
      } else {
        from_downstream[t] = receive_gradients(w, t);
      }
    }
    emit_begin(e);
    if (plan.stages[w.stage].checkpointing == Checkpointing::kFull) {  // recompute the forward, with autograd
      Executor::Environment env = stage_environment(w, m, state);
      const detail::ReplayDraws replay({w.executor.get()}, state.draws);
      run_stage(w, env);
      keep_for_backward(w, m, env, state);
    }
    if (w.stage == stages - 1) {
      w.loss += state.loss.item<double>();
      state.loss.backward();
    } else {
      for (int t = w.stage + 1; t < stages; ++t) {
        const Message& msg = from_downstream[t];
        for (size_t i = 0; i < msg.values.size(); ++i) {
          const auto sent = detail::flatten_tensors(state.sent[t][i]);
          const auto got = detail::flatten_tensors(msg.values[i]);
          for (size_t k = 0; k < sent.size() && k < got.size(); ++k) {
            if (!got[k].defined() || !sent[k].defined() || !sent[k].requires_grad()) continue;
            tensors.push_back(sent[k]);
            grads.push_back(got[k].to(sent[k].device()));
          }
        }
      }
      state.sent.clear();  // backward_from holds the only references
      detail::backward_from(tensors, std::move(grads));
    }
    emit_end(e);
    const auto grad_of = [](const torch::Tensor& leaf) {
      return leaf.defined() && leaf.grad().defined() ? leaf.grad() : torch::Tensor();
    };
    for (int p = 0; p < w.stage; ++p) {
      if (routing.sends[p][w.stage].empty()) continue;
      if (!remote(p) && resharded(p, w.stage)) {
        send_gradients(w, p, state, grad_of);
        continue;
      }
      Message msg;
      for (const auto& value : state.leaves[p]) {
        if (value.isList() || value.isTuple()) {
          msg.values.push_back(
              detail::map_tensors(value, grad_of));  // same structure, undefined where no gradient
        } else {
          const torch::Tensor grad = value.isTensor() ? grad_of(value.toTensor()) : torch::Tensor();
          msg.values.emplace_back(grad.defined() ? c10::IValue(grad) : c10::IValue());
        }
      }
      if (remote(p)) {
        send_remote(w, p, m, /*backward=*/true, std::move(msg));
      } else {
        send_message(w.stage, p, m, /*backward=*/true, std::move(msg));
      }
    }
    state = Pending{};
  }

  void run_worker(Worker& w) {
    w.offloaded = {};
    if (branch) {
      w.loss = 0.0;
      if (!branch->run(w.stage, w.index, *w.executor, w.loss)) throw Aborted{};
      return;
    }
    if (tensor) {
      w.loss = 0.0;
      const bool done =
          tensor->run(w.index, {*w.executor, w.group_draws ? *w.group_draws : *w.executor}, w.loss);
      w.offloaded = tensor->offloaded(w.index);
      if (!done) throw Aborted{};
      return;
    }
    const int stages = static_cast<int>(plan.stages.size());
    std::optional<torch::NoGradGuard> no_grad;
    if (!training) no_grad.emplace();
    std::vector<Pending> pending(plan.microbatches);
    w.loss = 0.0;
    w.outputs.assign(plan.microbatches, {});
    // Only the stage's first worker talks to the other processes (receive_remote, send_remote).
    const bool talks = options.transport != nullptr && leader(w);
    if (talks) options.transport->begin_step(step_index);
    const auto tasks = stage_schedule(plan.schedule, w.stage, stages, plan.microbatches, training);
    const ScheduledTask* last_backward = nullptr;
    for (const auto& task : tasks) {
      if (task.backward) last_backward = &task;
    }
    for (const ScheduledTask& task : tasks) {
      // Only the last backward completes gradients (earlier microbatches accumulate into them).
      if (overlap && &task == last_backward)
        overlap_armed = options.reducer->begin_backward(master_params, step_index);
      if (task.backward) {
        backward(w, task.microbatch, pending);
      } else {
        forward(w, task.microbatch, pending);
      }
    }
    if (talks) options.transport->finish_step();
  }

  // The lone worker on the calling thread (EngineOptions::inline_lone_worker). The binding is applied once
  // per thread; the first thread's own settings are restored by the destructor.
  void run_inline() {
    Worker& w = workers[0];
    if (bound_thread != std::this_thread::get_id()) {
      if (!bound_thread) {
        saved_affinity_valid =
            pthread_getaffinity_np(pthread_self(), sizeof(saved_affinity), &saved_affinity) == 0;
        saved_intra_op_threads = at::get_num_threads();
      }
      apply_to_current_thread(w.binding);
      bound_thread = std::this_thread::get_id();
    }
    try {
      run_worker(w);
    } catch (const Aborted&) {
    } catch (const std::exception& e) {
      fail(first_line(e));
    }
  }

  void restore_inline_thread() {
    if (!bound_thread || *bound_thread != std::this_thread::get_id()) return;
    DeviceBinding previous;
    previous.threads = saved_intra_op_threads;
    apply_to_current_thread(previous);
    if (saved_affinity_valid) pthread_setaffinity_np(pthread_self(), sizeof(saved_affinity), &saved_affinity);
  }

  // Runs jobs[w] on worker w's thread (its device binding and intra-op threads) for every w that has one, at
  // once, and waits for them all; an exception in one becomes first_error.
  void run_on_workers(std::vector<std::function<void()>> jobs) {
    PARTITA_ASSERT(jobs.size() == workers.size(), "one job slot per worker");
    const auto count =
        static_cast<int>(std::count_if(jobs.begin(), jobs.end(), [](const auto& j) { return bool(j); }));
    if (count == 0) return;
    {
      std::unique_lock<std::mutex> lock(mutex);
      worker_jobs = std::move(jobs);
      running = count;
      job_generation = ++generation;
    }
    start_cv.notify_all();
    std::unique_lock<std::mutex> lock(mutex);
    done_cv.wait(lock, [&] { return running == 0; });
  }

  void run_on_worker(int index, std::function<void()> job) {
    std::vector<std::function<void()>> jobs(workers.size());
    jobs[static_cast<size_t>(index)] = std::move(job);
    run_on_workers(std::move(jobs));
  }

  // How much slower the plan assumed device `id` (its source's device slowdowns: a rebalanced plan names the
  // device that became slow); 1 when it says nothing.
  double slowdown_of(const std::string& id) const {
    const auto it = plan.source.device_slowdowns.find(id);
    return it == plan.source.device_slowdowns.end() ? 1.0 : it->second;
  }

  // Steps the optimizer in parts, each on its worker, all at once (see part_workers); false when this engine
  // steps it in one place.
  bool step_in_parts(int index) {
    if (part_workers.empty()) return false;
    if (!optimizer_parts || !optimizer_parts->made_for(*optimizer)) {
      std::vector<Bytes> sizes;
      for (const auto& group : optimizer->param_groups()) {
        for (const auto& p : group.params())
          sizes.emplace_back(p.numel() * static_cast<int64_t>(p.element_size()));
      }
      std::vector<double> speeds;
      for (int w : part_workers) {
        const DeviceBinding& b = workers[static_cast<size_t>(w)].binding;
        speeds.push_back(std::max(1, b.threads) / slowdown_of(b.id));
      }
      optimizer_parts = std::make_unique<detail::OptimizerParts>(*optimizer, split_update(sizes, speeds),
                                                                 static_cast<int>(part_workers.size()));
    }
    std::vector<std::function<void()>> jobs(workers.size());
    for (size_t k = 0; k < part_workers.size(); ++k) {
      if (optimizer_parts->empty(static_cast<int>(k))) continue;
      const int w = part_workers[k];
      jobs[static_cast<size_t>(w)] = [this, k, w, index] {
        TaskEvent e{
            EngineTaskKind::kOptimizer, -1, w, workers[static_cast<size_t>(w)].binding.id, -1, index, {}, {}};
        emit_begin(e);
        optimizer_parts->step(static_cast<int>(k));
        emit_end(e);
      };
    }
    optimizer_parts->lend();
    run_on_workers(std::move(jobs));
    optimizer_parts->give_back();
    return true;
  }

  void worker_loop(int index) {
    Worker& w = workers[index];
    apply_to_current_thread(w.binding);
    int seen = 0;
    while (true) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex);
        start_cv.wait(lock, [&] { return stopping || generation != seen; });
        if (stopping) return;
        seen = generation;
        if (seen == job_generation) {
          job = worker_jobs[static_cast<size_t>(index)];
          if (!job) continue;  // other workers' jobs
        }
      }
      try {
        if (job)
          job();
        else
          run_worker(w);
      } catch (const Aborted&) {
      } catch (const std::exception& e) {
        fail(first_line(e));
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        --running;
      }
      done_cv.notify_all();
    }
  }
};

std::optional<std::string> engine_refusal(const Plan& plan) {
  const size_t stages = plan.stages.size();
  for (size_t k = 0; k < stages; ++k) {
    const Offload offload = plan.stages[k].offload;
    if (offload != Offload::kNone && plan.mode != Mode::kTraining)
      return fmt::format(
          "inference plan asks for {} offload on stage {}: offload is a training choice (inference saves no "
          "activations for backward and has no optimizer state); set the stage's offload to none",
          offload_name(offload), k);
    if (offloads_activations(offload) && plan.branch_layout())
      return fmt::format(
          "branch-parallel plan asks for activation offload on stage {}, which branch-parallel plans do not "
          "run yet; plan with --strategy pipeline or without a memory limit",
          k);
  }
  return std::nullopt;
}

std::optional<std::string> engine_refusal(const Plan& plan, const Graph& graph) {
  if (auto refusal = engine_refusal(plan)) return refusal;
  for (const Stage& st : plan.stages) {
    const DeviceGroup& group = plan.groups.at(static_cast<size_t>(st.group));
    if (group.parallelism != GroupParallelism::kTensor) continue;
    if (auto refusal = tensor_parallel_refusal(graph, group.tensor_degree())) return refusal;
  }
  return std::nullopt;
}

std::optional<std::string> tensor_parallel_refusal(const Graph& graph, int degree) {
  try {
    detail::plan_tensor_shards(graph, degree);
  } catch (const Error& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

Engine::Engine(LoadedModel& model, Plan plan, EngineOptions options)
    : impl_(std::make_unique<Impl>(model, std::move(plan), options)) {
  Impl& s = *impl_;
  options.validate();
  detail::spin_window();  // a bad PARTITA_SPIN_US is refused here, not in a waiting worker
  s.step_index = options.first_step;
  s.plan.check_against(model.ir);
  s.training = s.plan.mode == Mode::kTraining;
  PARTITA_CHECK(!s.plan.branch_layout() || options.local_replica < 0,
                "plan is a branch-parallel layout (explicit node lists per device), which runs with one "
                "process per stage, not per replica");
  const int stages = static_cast<int>(s.plan.stages.size());
  if (const auto refusal = engine_refusal(s.plan)) PARTITA_FAIL(*refusal);
  s.layout = stages > 1 ? Impl::Layout::kPipeline : Impl::Layout::kData;
  if (options.local_replica >= 0) {
    const size_t group_size = s.plan.groups[s.plan.stages.at(0).group].devices.size();
    PARTITA_CHECK(stages == 1 && static_cast<size_t>(options.local_replica) < group_size,
                  "this process runs replica ", options.local_replica,
                  " of a data-parallel plan, but the plan has ", stages, " stage(s) and ", group_size,
                  " device(s) in its first group; plan with --strategy data for that many processes");
    if (s.plan.has_tensor_groups()) {
      const int degree = s.plan.groups[s.plan.stages[0].group].tensor_degree();
      PARTITA_CHECK(options.tensor_link != nullptr && options.tensor_link->size() == degree &&
                        options.tensor_link->index() == options.local_replica % degree,
                    "this process runs device ", options.local_replica, " of a ", degree,
                    "-way tensor-parallel group, which needs a link to the group's other ", degree - 1,
                    " device(s) as device ", options.local_replica % degree, " of ", degree);
      PARTITA_CHECK(!s.training || options.reducer != nullptr,
                    "training one device of a tensor-parallel group needs a reducer (each process holds its "
                    "device's part of the gradients)");
    }
  }
  if (options.local_stage >= 0) {
    PARTITA_CHECK(stages > 1 && options.local_stage < stages, "this process runs stage ", options.local_stage,
                  " of a pipeline, but the plan has ", stages,
                  " stage(s); plan with --strategy pipeline for that many processes");
    PARTITA_CHECK(
        !s.training || options.reducer != nullptr,
        "training one stage of a pipeline needs a reducer (the loss is computed by the last stage)");
  }
  // Installed by the first engine that offloads activations, before any of its workers runs a forward or a
  // backward (activation_offload.h). Engines without activation offload leave LibTorch's engine alone.
  if (s.training && std::any_of(s.plan.stages.begin(), s.plan.stages.end(),
                                [](const Stage& st) { return offloads_activations(st.offload); })) {
    if (const auto why_not = install_activation_offload()) PARTITA_FAIL(*why_not);
  }
  s.routing = route_stages(model.ir, s.plan);
  if (options.local_stage >= 0) s.check_values_can_cross_processes();
  if (!s.plan.has_tensor_groups()) s.check_values_can_be_split();  // the tensor runner checks its own cuts
  // Branch plans' stages are node lists, not ranges: their runner checks its own in-place writes.
  if (!s.plan.branch_layout()) s.check_writes_reach_their_storage();
  if (s.training) {
    const Graph& g = model.ir;
    const int carrier = g.batch_input_index();
    PARTITA_CHECK(
        carrier >= 0 && !g.outputs().empty() && g.value(g.inputs()[static_cast<size_t>(carrier)]).meta() &&
            !g.value(g.outputs()[0]).tensors.empty(),
        "training needs a model with a batched tensor input and a tensor output (annotate the model "
        "first)");
    s.loss_kind = resolve_loss(options.loss, *g.value(g.inputs()[static_cast<size_t>(carrier)]).meta(),
                               g.value(g.outputs()[0]).tensors[0]);
  }
  s.stage_workers.assign(stages, {});
  for (int st = 0; st < stages; ++st) {
    const DeviceGroup& g = s.plan.groups[s.plan.stages[st].group];
    int offset = 0;
    for (size_t d = 0; d < g.devices.size(); ++d) {
      const bool elsewhere = (options.local_replica >= 0 && static_cast<int>(d) != options.local_replica) ||
                             (options.local_stage >= 0 && st != options.local_stage);
      if (elsewhere) {  // another process runs it
        offset += g.batch_shares[d];
        continue;
      }
      Impl::Worker w;
      w.index = static_cast<int>(s.workers.size());
      w.stage = st;
      w.replica = static_cast<int>(d);
      w.share_offset = offset;
      w.share = g.batch_shares[d];
      offset += w.share;
      w.binding = bind_device(g.devices[d]);  // the executor: place_parameters()
      s.bindings.push_back(w.binding);
      s.stage_workers[st].push_back(w.index);
      s.workers.push_back(std::move(w));
    }
  }
  const size_t worker_count = s.workers.size();
  s.forward_channels.resize(worker_count);
  s.backward_channels.resize(worker_count);
  // Channels carry the pipeline engine's messages; the branch and tensor runners have their own.
  const bool pipeline_messages = !s.plan.branch_layout() && !s.plan.has_tensor_groups();
  for (size_t a = 0; pipeline_messages && a < worker_count; ++a) {
    s.forward_channels[a].resize(worker_count);
    s.backward_channels[a].resize(worker_count);
    for (size_t b = 0; b < worker_count; ++b) {
      const Impl::Worker &up = s.workers[a], &down = s.workers[b];
      if (down.stage <= up.stage || s.routing.sends[up.stage][down.stage].empty()) continue;
      if (s.resharded(up.stage, down.stage) && !Impl::linked(up, down)) continue;
      s.forward_channels[a][b] = std::make_unique<MessageChannel>();
      s.backward_channels[a][b] = std::make_unique<MessageChannel>();
    }
  }
  if (pipeline_messages && options.local_stage >= 0 && s.stage_workers[options.local_stage].size() > 1) {
    s.to_leader.resize(worker_count);
    s.from_leader.resize(worker_count);
    for (size_t w = 1; w < worker_count; ++w) {  // worker 0 is the leader (the local stage's first)
      s.to_leader[w] = std::make_unique<MessageChannel>();
      s.from_leader[w] = std::make_unique<MessageChannel>();
    }
  }
  for (size_t i = 0; i < model.parameters.size(); ++i) {
    const auto& p = model.parameters[i];
    if (!p.requires_grad()) continue;
    s.master_params.push_back(p);
    // Several stages use it: each process has a part of its gradient, summed by the reducer.
    std::set<int> users;
    for (NodeId u : model.ir.value(model.ir.parameters()[i].value).users)
      users.insert(s.routing.stage_of_node[u]);
    if (options.local_stage >= 0 && users.size() > 1) s.shared_params.push_back(p);
  }
  if (s.training && s.options.optimizer) {
    const auto& given = s.options.optimizer->param_groups();
    size_t count = 0;
    bool same = true;
    for (const auto& group : given) {
      for (const auto& p : group.params()) {
        same = same && count < s.master_params.size() && p.is_same(s.master_params[count]);
        ++count;
      }
    }
    PARTITA_CHECK(
        same && count == s.master_params.size(),
        "the optimizer given to the engine does not own this model's trainable parameters in order (", count,
        " tensors given, ", s.master_params.size(), " expected)");
    s.optimizer = s.options.optimizer;
  } else if (s.training) {
    s.optimizer = make_optimizer(s.plan.optimizer, s.master_params, s.options.learning_rate);
  }
  s.place_parameters();
  if (s.plan.branch_layout()) {
    s.branch = std::make_unique<detail::BranchRunner>(
        model, s.plan, s.training, s.loss_kind, s.bindings, s.observers,
        detail::BranchRunnerScope{options.local_stage, options.transport});
  }
  if (s.plan.has_tensor_groups()) {
    detail::TensorRunnerScope scope;
    scope.local_device = options.local_replica;
    scope.link = options.tensor_link;
    scope.local_stage = options.local_stage;
    scope.transport = options.transport;
    s.tensor = std::make_unique<detail::TensorRunner>(model, s.plan, s.training, s.loss_kind, s.bindings,
                                                      s.observers, scope);
    // One device per process: keep only its parts of the split weights (and of what the optimizer keeps for
    // them: a resumed run's whole state is cut here).
    s.tensor->hold_parts(model.parameters, s.optimizer.get());
    std::set<const c10::TensorImpl*> parts;
    for (const auto& h : s.tensor->held_parts())
      parts.insert(model.parameters[h.parameter].unsafeGetTensorImpl());
    for (const auto& p : s.master_params) {
      if (parts.count(p.unsafeGetTensorImpl()) == 0) s.unheld_params.push_back(p);
    }
  }
  int cpu_workers = 0, cpu_threads = 0;
  for (const auto& b : s.bindings) {
    cpu_workers += b.device.is_cpu() ? 1 : 0;
    cpu_threads += b.device.is_cpu() ? b.threads : 0;
  }
  // The other replicas' processes run on this host's cores at the same time (one machine: partita launch).
  if (options.local_replica >= 0) {
    const int replicas = static_cast<int>(s.plan.groups[s.plan.stages[0].group].devices.size());
    cpu_workers = std::max(cpu_workers, replicas);
  }
  if (options.local_stage >= 0)
    cpu_workers = std::max(cpu_workers, static_cast<int>(s.plan.used_devices().size()));
  const bool contended = cpu_workers > 1 || cpu_threads > 1;
  if (options.blas == BlasThreads::kOne || (options.blas == BlasThreads::kAuto && contended)) {
    s.saved_blas_threads = blas_threads();
    set_blas_threads(1);
  }
  // One replica of a multi-process data-parallel plan: the reducer may start each bucket's all-reduce as
  // soon as its gradients are final (hooks on the parameters' gradient accumulators, like DDP's).
  s.overlap = s.training && options.local_replica >= 0 && options.reducer != nullptr && !s.tensor &&
              s.workers.size() == 1 && s.workers[0].binding.device.is_cpu() &&
              options.reducer->can_overlap(s.master_params);
  if (s.overlap) {
    for (size_t k = 0; k < s.master_params.size(); ++k) {
      auto accumulator = torch::autograd::impl::grad_accumulator(s.master_params[k]);
      PARTITA_ASSERT(accumulator != nullptr, "a trainable parameter has no gradient accumulator");
      const uintptr_t key =
          accumulator->add_post_hook(std::make_unique<GradientReadyHook>(options.reducer, k));
      s.grad_hooks.emplace_back(std::move(accumulator), key);
    }
  }
  // Among workers with as many threads, the one the plan assumed least slowed, as the simulator assumes.
  for (size_t i = 0; i < s.workers.size(); ++i) {
    const DeviceBinding& b = s.workers[i].binding;
    if (!b.device.is_cpu()) continue;
    const DeviceBinding* best =
        s.optimizer_worker < 0 ? nullptr : &s.workers[static_cast<size_t>(s.optimizer_worker)].binding;
    if (best == nullptr || b.threads > best->threads ||
        (b.threads == best->threads && s.slowdown_of(b.id) < s.slowdown_of(best->id)))
      s.optimizer_worker = static_cast<int>(i);
  }
  s.inline_worker = options.inline_lone_worker && s.workers.size() == 1;
  const bool one_process = options.local_stage < 0 && options.local_replica < 0 && options.reducer == nullptr;
  const bool all_cpu = std::all_of(s.workers.begin(), s.workers.end(),
                                   [](const Impl::Worker& w) { return w.binding.device.is_cpu(); });
  if (s.training && one_process && all_cpu && s.copies.empty() &&
      detail::OptimizerParts::can_split(*s.optimizer)) {
    for (const std::string& id : s.plan.used_devices()) {
      const auto w = std::find_if(s.workers.begin(), s.workers.end(),
                                  [&](const Impl::Worker& x) { return x.binding.id == id; });
      const bool seen = std::any_of(s.part_workers.begin(), s.part_workers.end(), [&](int k) {
        return s.workers[static_cast<size_t>(k)].binding.id == id;
      });
      if (w != s.workers.end() && !seen) s.part_workers.push_back(w->index);
    }
    if (s.part_workers.size() < 2) s.part_workers.clear();
  }
  if (s.inline_worker) return;
  for (size_t i = 0; i < s.workers.size(); ++i) {
    s.workers[i].thread = std::thread([this, i] { impl_->worker_loop(static_cast<int>(i)); });
  }
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->start_cv.notify_all();
  for (auto& w : impl_->workers) {
    if (w.thread.joinable()) w.thread.join();
  }
  for (auto& [accumulator, key] : impl_->grad_hooks) accumulator->del_post_hook(key);
  impl_->restore_inline_thread();
  if (impl_->saved_blas_threads > 0) set_blas_threads(impl_->saved_blas_threads);
}

StepResult Engine::step(const StepInputs& batch) {
  Impl& s = *impl_;
  const Graph& g = s.model.ir;
  PARTITA_CHECK(batch.inputs.size() == g.inputs().size(), "step needs ", g.inputs().size(), " input(s), got ",
                batch.inputs.size());
  for (size_t i = 0; i < batch.inputs.size(); ++i) {
    const torch::Tensor& t = batch.inputs[i];
    if (g.value(g.inputs()[i]).shared) continue;
    PARTITA_CHECK(t.dim() >= 1 && t.size(0) == s.plan.global_batch, "input batch ", t.dim() ? t.size(0) : 0,
                  " does not match the plan's global batch ", s.plan.global_batch,
                  "; plan again for this batch");
  }
  if (s.training) {
    // One target row per row of the traced first output: the global batch, except in a model that keeps the
    // batch whole and returns another number of rows (its plans never slice the targets).
    const std::vector<int64_t>& traced = g.value(g.outputs()[0]).tensors.at(0).shape;
    const int64_t rows =
        s.loss_kind == LossKind::kNextToken || traced.empty() ? s.plan.global_batch : traced.front();
    PARTITA_CHECK(batch.targets.defined() && batch.targets.dim() >= 1 && batch.targets.size(0) == rows,
                  "training step needs targets with ", rows, " rows (from Engine::make_targets), got ",
                  batch.targets.defined() ? batch.targets.sizes() : at::IntArrayRef{});
    // Set to none: the step's first gradient of a parameter becomes its .grad, so no zeroed buffer waits
    // through the forward and no fresh gradient sits beside it while it is added in (the memory model's
    // assumption; with zero_grad a resnet18 step held 17 MiB more than predicted). The gradients that live in
    // the reducer's buckets (autograd accumulates into them) are kept and zeroed; before, every gradient of a
    // process with a reducer was, and a launched GPT branch plan's first rank held all 16 MiB of them
    // through its forward.
    clear_gradients(*s.optimizer, [&](const torch::Tensor& grad) {
      return s.options.reducer != nullptr && s.options.reducer->holds(grad);
    });
  }
  for (auto& row : s.forward_channels) {
    for (auto& c : row)
      if (c) c->reset();
  }
  for (auto& row : s.backward_channels) {
    for (auto& c : row)
      if (c) c->reset();
  }
  for (auto* side : {&s.to_leader, &s.from_leader}) {
    for (auto& c : *side)
      if (c) c->reset();
  }
  if (s.branch) s.branch->begin_step(batch, s.step_index);
  if (s.tensor) s.tensor->begin_step(batch, s.step_index);
  s.overlap_armed = false;
  if (s.inline_worker) {
    s.batch = &batch;
    s.first_error.clear();
    s.run_inline();
    s.batch = nullptr;
  } else {
    {
      std::unique_lock<std::mutex> lock(s.mutex);
      s.batch = &batch;
      s.first_error.clear();
      s.running = static_cast<int>(s.workers.size());
      ++s.generation;
    }
    s.start_cv.notify_all();
    {
      std::unique_lock<std::mutex> lock(s.mutex);
      s.done_cv.wait(lock, [&] { return s.running == 0; });
      s.batch = nullptr;
    }
  }
  const int index = s.step_index++;
  const bool overlapped = s.overlap_armed;
  s.overlap_armed = false;
  if (overlapped && !s.first_error.empty()) s.options.reducer->abandon();
  PARTITA_CHECK(s.first_error.empty(), "step ", index, " failed: ", s.first_error);

  StepResult result;
  if (s.training) {
    // One optimizer steps every trainable parameter where it lives (place_parameters): a GPU stage's own
    // parameters and their optimizer state on the GPU, the rest on the host (optimizer-state offload,
    // Offload::kOptimizerState, keeps a GPU stage's parameters there too). Device copies of host parameters
    // hand their gradients to the host here and are refreshed after the update.
    TaskEvent reduce{EngineTaskKind::kGradientReduce, -1, -1, "host", -1, index, {}, {}};
    s.emit_begin(reduce);
    s.gather_copied_gradients();
    for (const auto& w : s.workers) result.loss += w.loss;
    result.offloaded.assign(s.plan.stages.size(), {});
    for (const auto& w : s.workers) result.offloaded[static_cast<size_t>(w.stage)] += w.offloaded;
    if (s.options.local_stage >= 0) {    // one stage of a pipeline (its devices tensor-parallel or not)
      for (auto& p : s.shared_params) {  // every process must hand the reducer the same gradients
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      }
      result.loss = s.options.reducer->reduce(s.shared_params, result.loss, index);
    } else if (s.tensor && s.options.reducer != nullptr) {
      // One device of a tensor group: zeros where it contributed nothing (every process hands the reducer
      // the same gradients). The parts it holds have their whole gradient here: not summed.
      const std::vector<torch::Tensor>& summed =
          s.tensor->holding_parts() ? s.unheld_params : s.master_params;
      for (torch::Tensor p : summed) {  // a handle: its gradient is the parameter's
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      }
      result.loss = s.options.reducer->reduce(summed, result.loss, index);
    } else if (s.options.reducer != nullptr) {
      result.loss = overlapped ? s.options.reducer->finish(s.master_params, result.loss, index)
                               : s.options.reducer->reduce(s.master_params, result.loss, index);
    }
    s.emit_end(reduce);
    // The update runs where the plan has the most CPU threads (a caller kept at one intra-op thread would
    // make a whole-CPU plan's Adam step single-threaded), then GPU copies are refreshed.
    auto update = [&s] {
      s.optimizer->step();
      s.refresh_copies();
    };
    const std::string where =
        s.optimizer_worker >= 0 ? s.workers[static_cast<size_t>(s.optimizer_worker)].binding.id : "host";
    TaskEvent opt{EngineTaskKind::kOptimizer, -1, s.optimizer_worker, where, -1, index, {}, {}};
    if (s.step_in_parts(index)) {
      PARTITA_CHECK(s.first_error.empty(), "step ", index, ": the optimizer step failed: ", s.first_error);
    } else {
      s.emit_begin(opt);
      if (s.optimizer_worker >= 0 && !s.inline_worker) {  // inline: this thread is that worker's
        s.run_on_worker(s.optimizer_worker, update);
        PARTITA_CHECK(s.first_error.empty(), "step ", index, ": the optimizer step failed: ", s.first_error);
      } else {
        update();
      }
      s.emit_end(opt);
    }
  } else if (s.branch) {
    result.outputs = s.branch->take_outputs();
  } else if (s.tensor) {
    result.outputs = s.tensor->take_outputs();
  } else {
    const int last = static_cast<int>(s.plan.stages.size()) - 1;
    std::vector<std::vector<torch::Tensor>> pieces;
    for (int m = 0; m < s.plan.microbatches; ++m) {
      for (const auto& w : s.workers) {
        if (w.stage != last) continue;
        const auto& outs = w.outputs[m];
        if (pieces.empty()) pieces.resize(outs.size());
        for (size_t i = 0; i < outs.size() && i < pieces.size(); ++i)
          pieces[i].push_back(outs[i].to(torch::kCPU));
      }
    }
    // One piece is the output itself (torch::cat would copy it).
    for (auto& p : pieces) result.outputs.push_back(p.size() == 1 ? p.front() : torch::cat(p, 0));
    // The engine keeps no reference to the outputs. Kept here, the last stage's worker would free them only
    // when it wakes in the next step, while the first stage may already run: a one-microbatch GPT pipeline's
    // 8 MiB of logits beside its first stage, 4 MiB above the host peak, whenever that worker woke late.
    for (auto& w : s.workers) w.outputs.assign(w.outputs.size(), {});
  }
  return result;
}

torch::Tensor Engine::make_targets(const std::vector<torch::Tensor>& inputs, uint64_t seed) const {
  const Graph& g = impl_->model.ir;
  PARTITA_CHECK(!inputs.empty(), "make_targets needs the step's inputs");
  // The traced output shape, not "the input's dim 0 rows": a model that keeps the batch whole may return
  // another number of rows (pairs from x.chunk(2, 0)) or carry the batch elsewhere.
  const int carrier = g.batch_input_index();
  PARTITA_CHECK(carrier >= 0 && static_cast<size_t>(carrier) < inputs.size(),
                "make_targets needs the step's batched input");
  const torch::Tensor& batch_input = inputs[static_cast<size_t>(carrier)];
  const std::vector<int64_t>& traced_input =
      g.value(g.inputs()[static_cast<size_t>(carrier)]).tensors.at(0).shape;
  PARTITA_CHECK(batch_input.sizes() == at::IntArrayRef(traced_input), "make_targets: the batch input is ",
                batch_input.sizes(), " where the model was imported at ", at::IntArrayRef(traced_input),
                "; targets are drawn for the imported batch");
  return partita::make_targets(impl_->loss_kind, batch_input, g.value(g.outputs()[0]).tensors.at(0).shape,
                               seed);
}

void Engine::add_observer(RuntimeObserver* observer) { impl_->observers.push_back(observer); }
const Plan& Engine::plan() const { return impl_->plan; }
const std::vector<DeviceBinding>& Engine::bindings() const { return impl_->bindings; }
LossKind Engine::loss_kind() const { return impl_->loss_kind; }
std::vector<torch::Tensor> Engine::parameters() const { return impl_->master_params; }
std::vector<std::string> Engine::parameter_homes() const {
  const Impl& s = *impl_;
  std::vector<std::string> homes;
  for (size_t i = 0; i < s.model.parameters.size(); ++i) {
    if (!s.model.parameters[i].requires_grad()) continue;
    homes.push_back(s.keeper.empty() || s.keeper[i] < 0
                        ? "host"
                        : s.workers[static_cast<size_t>(s.keeper[i])].binding.id);
  }
  return homes;
}
std::shared_ptr<torch::optim::Optimizer> Engine::optimizer() const { return impl_->optimizer; }

bool Engine::hold_whole_model() {
  Impl& s = *impl_;
  if (!s.tensor || !s.tensor->holding_parts()) return false;
  s.tensor->hold_whole(s.model.parameters, s.optimizer.get(), s.step_index);
  return true;
}

void Engine::hold_own_parts() {
  Impl& s = *impl_;
  if (s.tensor) s.tensor->hold_parts(s.model.parameters, s.optimizer.get());
}

int64_t Engine::held_part_bytes() const {
  const Impl& s = *impl_;
  if (!s.tensor || !s.tensor->holding_parts()) return 0;
  int64_t bytes = 0;
  for (const auto& h : s.tensor->held_parts()) {
    const torch::Tensor& p = s.model.parameters[h.parameter];
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  return bytes;
}

DrawStates Engine::draw_states() const {
  DrawStates states;
  for (const auto& d : impl_->drawing_executors()) {
    torch::Tensor state = detail::draws_state({d.executor}).at(0);
    if (state.defined()) states[d.name] = std::move(state);  // undefined: no generator of its own
  }
  return states;
}

void Engine::restore_draw_states(const DrawStates& states) {
  if (states.empty()) return;  // a checkpoint written before the states were kept
  const auto executors = impl_->drawing_executors();
  const auto restore = [](const Executor& e, const torch::Tensor& state) {
    at::Generator g = e.generator();
    if (!g.defined() || !state.defined()) return;
    const std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(state);
  };
  if (positional_draw_states(states)) {  // a version-2 checkpoint: this process's, in worker order
    PARTITA_CHECK(states.size() == executors.size(), "the checkpoint keeps ", states.size(),
                  " random generator states but this run's plan draws from ", executors.size(),
                  "; resume with the plan and the number of processes the checkpoint was written with");
    for (size_t i = 0; i < executors.size(); ++i)
      restore(*executors[i].executor, states.at(std::to_string(i)));
    return;
  }
  for (const auto& d : executors) {
    if (!d.executor->generator().defined()) continue;  // nothing to restore
    const auto it = states.find(d.name);
    PARTITA_CHECK(it != states.end(), "the checkpoint keeps no random generator state for ", d.name,
                  " (it keeps ", states.size(), ": ", states.begin()->first,
                  (states.size() > 1 ? ", ..." : ""),
                  "); resume with the plan the checkpoint was written with");
    restore(*d.executor, it->second);
  }
}

}  // namespace partita

#include "engine_tensor.h"

#include <torch/autograd.h>

#include <algorithm>
#include <optional>
#include <string>

#include "backward_from.h"
#include "ivalue_tensors.h"
#include "partita/core/error.h"
#include "partita/runtime/optimizer.h"
#include "partita/runtime/schedule.h"
#include "replay_draws.h"

namespace partita::detail {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Device `device`'s part of `t` along `shard` (blocks, each cut in `degree` parts), in block order.
torch::Tensor part_of(const torch::Tensor& t, const Shard& shard, int device, int degree) {
  const int64_t extent = t.size(shard.dim);
  const int64_t block = extent / shard.blocks, piece = block / degree;
  PARTITA_CHECK(extent % (int64_t{shard.blocks} * degree) == 0, "a tensor of ", extent, " entries along dim ",
                shard.dim, " does not split into ", shard.blocks, " x ", degree,
                " parts; plan tensor parallelism for this batch and degree again");
  if (shard.blocks == 1) return t.narrow(shard.dim, device * piece, piece);
  std::vector<torch::Tensor> pieces;
  for (int b = 0; b < shard.blocks; ++b)
    pieces.push_back(t.narrow(shard.dim, b * block + device * piece, piece));
  return torch::cat(pieces, shard.dim);
}

// The whole tensor from every device's part (part_of's inverse).
torch::Tensor whole_of(const std::vector<torch::Tensor>& parts, const Shard& shard, const torch::Device& on) {
  std::vector<torch::Tensor> pieces;
  for (int b = 0; b < shard.blocks; ++b) {
    for (const auto& p : parts) {
      const int64_t piece = p.size(shard.dim) / shard.blocks;
      pieces.push_back(p.narrow(shard.dim, b * piece, piece).to(on));
    }
  }
  return torch::cat(pieces, shard.dim);
}

// Adds `part` (device `device`'s part along `shard`) into its place in `whole`.
void add_part(torch::Tensor whole, const torch::Tensor& part, const Shard& shard, int device, int degree) {
  const int64_t block = whole.size(shard.dim) / shard.blocks, piece = block / degree;
  for (int b = 0; b < shard.blocks; ++b)
    whole.narrow(shard.dim, b * block + device * piece, piece).add_(part.narrow(shard.dim, b * piece, piece));
}

torch::Tensor sum_in_order(const std::vector<torch::Tensor>& parts, const torch::Device& on) {
  torch::Tensor sum = parts[0].to(on);
  for (size_t r = 1; r < parts.size(); ++r) sum = sum + parts[r].to(on);
  return sum;
}

// One collective of one device: where to meet the others and how the tensor is split.
struct Collective {
  PartExchange* exchange;
  uint64_t key;
  int device;
  int degree;
  Shard shard;  // gathers
};

enum class CollectiveKind : uint64_t { kReduceOutput = 0, kReduceGradient = 1, kGather = 2 };
constexpr uint64_t kRecomputed = 8;  // in the kind's bits: a checkpointed stage's second forward
uint64_t key_of(int microbatch, CollectiveKind kind, int64_t id, bool recompute = false) {
  return (static_cast<uint64_t>(microbatch) << 40) |
         ((static_cast<uint64_t>(kind) | (recompute ? kRecomputed : 0)) << 32) |
         static_cast<uint64_t>(static_cast<uint32_t>(id));
}

// Forward: the group's sum of the devices' partial results; backward: the gradient as it is (every device
// holds the same replicated gradient of the sum).
struct AllReduceSum : torch::autograd::Function<AllReduceSum> {
  static torch::Tensor forward(AutogradContext*, const torch::Tensor& partial, const Collective& c) {
    return sum_in_order(c.exchange->all_parts(c.key, c.device, partial), partial.device());
  }
  static variable_list backward(AutogradContext*, variable_list grad) { return {grad[0], torch::Tensor()}; }
};

// A replicated tensor entering split nodes. Forward: itself; backward: the sum of the devices' gradients
// (each computed the part through its own shard).
struct EnterSplit : torch::autograd::Function<EnterSplit> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const Collective& c) {
    ctx->saved_data["exchange"] = reinterpret_cast<int64_t>(c.exchange);
    ctx->saved_data["key"] = static_cast<int64_t>(c.key);
    ctx->saved_data["device"] = c.device;
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto* exchange = reinterpret_cast<PartExchange*>(ctx->saved_data["exchange"].toInt());
    const auto key = static_cast<uint64_t>(ctx->saved_data["key"].toInt());
    const int device = static_cast<int>(ctx->saved_data["device"].toInt());
    const torch::Tensor g = grad[0].defined() ? grad[0] : torch::Tensor();
    PARTITA_ASSERT(g.defined(), "a gradient entering a tensor-parallel split is undefined");
    return {sum_in_order(exchange->all_parts(key, device, g), g.device()), torch::Tensor()};
  }
};

// The whole tensor on every device from the devices' parts; backward: this device's part of the gradient.
struct GatherSplit : torch::autograd::Function<GatherSplit> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& part, const Collective& c) {
    ctx->saved_data["dim"] = c.shard.dim;
    ctx->saved_data["blocks"] = c.shard.blocks;
    ctx->saved_data["device"] = c.device;
    ctx->saved_data["degree"] = c.degree;
    return whole_of(c.exchange->all_parts(c.key, c.device, part), c.shard, part.device());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const Shard s{static_cast<int>(ctx->saved_data["dim"].toInt()),
                  static_cast<int>(ctx->saved_data["blocks"].toInt())};
    return {part_of(grad[0], s, static_cast<int>(ctx->saved_data["device"].toInt()),
                    static_cast<int>(ctx->saved_data["degree"].toInt())),
            torch::Tensor()};
  }
};

}  // namespace

namespace {

// What collective `key` is, for errors: "the all-reduce of node 12 (aten::linear ...)'s output, microbatch
// 0".
std::string describe_collective(const Graph& g, uint64_t key) {
  const auto microbatch = static_cast<int>(key >> 40);
  const auto kind = static_cast<CollectiveKind>((key >> 32) & 0xff & ~kRecomputed);
  const bool recomputed = ((key >> 32) & kRecomputed) != 0;
  const auto id = static_cast<int64_t>(key & 0xffffffffu);
  std::string what;
  if (kind == CollectiveKind::kReduceOutput && id < g.num_nodes()) {
    what = "the all-reduce of " + describe_node(g.node(static_cast<NodeId>(id))) + "'s output";
  } else if (kind == CollectiveKind::kReduceGradient && id < g.num_values()) {
    what = "the gradient all-reduce of value '" + g.value(static_cast<ValueId>(id)).name + "'";
  } else if (kind == CollectiveKind::kGather) {
    what = "the gather of graph output " + std::to_string(id);
  } else {
    what = "collective " + std::to_string(key);
  }
  return what + ", microbatch " + std::to_string(microbatch) + (recomputed ? " (recomputed forward)" : "");
}

}  // namespace

std::vector<torch::Tensor> PartExchange::linked_parts(uint64_t key, int device, const torch::Tensor& part) {
  PARTITA_ASSERT(device == link_->index() && size_ == link_->size(), "device ", device, " of ", size_,
                 " on a link to device ", link_->index(), " of ", link_->size());
  const torch::Tensor cpu = part.detach().to(torch::kCPU);
  std::vector<uint64_t> keys;
  std::vector<torch::Tensor> parts = link_->all_gather(key, cpu, keys, step_);
  for (size_t d = 0; d < parts.size(); ++d) {
    PARTITA_CHECK(keys[d] == key, "step ", step_, ": tensor-parallel device ", device, " reached ",
                  describe_collective(*graph_, key), " but device ", d, " reached ",
                  describe_collective(*graph_, keys[d]),
                  "; the processes run different graphs or plans (start them from the same files)");
    parts[d] = static_cast<int>(d) == device ? part : parts[d].to(part.device());
  }
  return parts;
}

std::vector<torch::Tensor> PartExchange::all_parts(uint64_t key, int device, torch::Tensor part) {
  if (link_ != nullptr) return linked_parts(key, device, part);
  std::unique_lock<std::mutex> lock(mutex_);
  if (aborted_) throw ExchangeAborted{};
  Slot& slot = slots_[key];
  if (slot.parts.empty()) slot.parts.resize(static_cast<size_t>(size_));
  PARTITA_ASSERT(!slot.parts[static_cast<size_t>(device)].defined(), "device ", device,
                 " handed in collective ", key, " twice");
  slot.parts[static_cast<size_t>(device)] = std::move(part);
  if (++slot.arrived == size_) cv_.notify_all();
  cv_.wait(lock, [&] { return aborted_ || slot.arrived == size_; });
  if (aborted_) throw ExchangeAborted{};
  std::vector<torch::Tensor> parts = slot.parts;
  if (++slot.taken == size_) slots_.erase(key);
  return parts;
}

void PartExchange::abort() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
  }
  cv_.notify_all();
}

void PartExchange::reset(int step) {
  if (link_ != nullptr) link_->begin_step(step);
  std::lock_guard<std::mutex> lock(mutex_);
  step_ = step;
  slots_.clear();
  aborted_ = false;
}

TensorRunner::TensorRunner(const LoadedModel& model, const Plan& plan, bool training, LossKind loss,
                           const std::vector<DeviceBinding>& bindings,
                           const std::vector<RuntimeObserver*>& observers, TensorRunnerScope scope)
    : model_(model),
      plan_(plan),
      training_(training),
      loss_kind_(loss),
      bindings_(bindings),
      observers_(observers),
      scope_(scope),
      routing_(route_stages(model.ir, plan)) {
  const Graph& g = model.ir;
  const int stage_count = static_cast<int>(plan.stages.size());
  const int local_device = scope.local_device;
  PARTITA_ASSERT(local_device < 0 || (stage_count == 1 && scope.link != nullptr),
                 "a tensor-parallel device in a process of its own needs a one-stage plan and a link");
  PARTITA_ASSERT(scope.local_stage < 0 ||
                     (local_device < 0 && scope.local_stage < stage_count && scope.transport != nullptr),
                 "a pipeline stage in a process of its own needs a stage of the plan and a transport");
  int worker = 0;
  for (int s = 0; s < stage_count; ++s) {
    const DeviceGroup& group = plan.groups.at(static_cast<size_t>(plan.stages[static_cast<size_t>(s)].group));
    StageInfo st;
    st.first = plan.stages[static_cast<size_t>(s)].first;
    st.last = plan.stages[static_cast<size_t>(s)].last;
    st.degree = group.tensor_degree();
    if (!shard_plans_.count(st.degree)) {
      if (st.degree > 1) {
        shard_plans_.emplace(st.degree, plan_tensor_shards(g, st.degree));
      } else {  // a one-device stage: nothing split
        TensorShardPlan whole;
        whole.shard.assign(static_cast<size_t>(g.num_values()), Shard{});
        whole.nodes.resize(static_cast<size_t>(g.num_nodes()));
        for (const Node& n : g.nodes()) whole.nodes[static_cast<size_t>(n.id)].inputs.resize(n.inputs.size());
        whole.gather.assign(g.outputs().size(), false);
        shard_plans_.emplace(1, std::move(whole));
      }
    }
    st.shards = &shard_plans_.at(st.degree);
    int offset = 0;
    for (size_t d = 0; d < group.devices.size(); d += static_cast<size_t>(st.degree)) {
      st.replica_offset.push_back(offset);
      st.replica_share.push_back(group.batch_shares[d]);
      offset += group.batch_shares[d];
      const bool linked =
          local_device >= 0 && local_device / st.degree == static_cast<int>(st.exchanges.size());
      st.exchanges.push_back(std::make_unique<PartExchange>(st.degree, linked ? scope.link : nullptr, &g));
    }
    PARTITA_CHECK(offset == plan.microbatch_size(), "stage ", s, "'s tensor group holds ", offset,
                  " samples of each microbatch of ", plan.microbatch_size(), "; plan again");
    for (size_t d = 0; d < group.devices.size(); ++d) {
      if ((local_device >= 0 && static_cast<int>(d) != local_device) || remote(s))
        continue;  // another process's
      worker_stage_.push_back(s);
      worker_device_.push_back(static_cast<int>(d));
      ++worker;
    }
    stages_.push_back(std::move(st));
  }
  PARTITA_ASSERT(worker == static_cast<int>(bindings.size()), worker, " plan devices, ", bindings.size(),
                 " bindings");
  // Values crossing a cut travel whole: a split one (a cut inside a pair) is refused.
  for (int p = 0; p < stage_count; ++p) {
    for (int t = p + 1; t < stage_count; ++t) {
      for (ValueId v : routing_.sends[static_cast<size_t>(p)][static_cast<size_t>(t)]) {
        const Value& value = g.value(v);
        PARTITA_CHECK(!stages_[static_cast<size_t>(p)].shards->shard[static_cast<size_t>(v)].split() &&
                          !stages_[static_cast<size_t>(t)].shards->shard[static_cast<size_t>(v)].split(),
                      "value '", value.name, "' crosses from stage ", p, " to stage ", t,
                      " split across a tensor-parallel group (the cut falls inside a column/row pair); cut ",
                      "between pairs or plan with --strategy pipeline");
        PARTITA_CHECK(
            !resharded(p, t) || routing_.hybrid_crossable[static_cast<size_t>(v)], "value '", value.name,
            "' crosses from stage ", p, " to stage ", t,
            " whose devices hold different samples but is not a tensor whose dimension 0 is the batch, "
            "so it cannot be split between them; plan another cut");
        PARTITA_CHECK(value.kind == ValueKind::kTensor || value.kind == ValueKind::kScalar ||
                          value.kind == ValueKind::kNone,
                      "value '", value.name, "' (a list or tuple) crosses from stage ", p, " to stage ", t,
                      " of a pipeline of tensor-parallel groups, which passes tensors and numbers only; ",
                      "plan another cut");
      }
    }
  }
  // Per stage, values released after their last use inside it (kept: graph outputs, what the stage sends).
  std::vector<bool> keep(static_cast<size_t>(g.num_values()), false);
  for (ValueId v : g.outputs()) keep[static_cast<size_t>(v)] = true;
  for (const Value& v : g.values()) {
    if (v.role != ValueRole::kIntermediate) keep[static_cast<size_t>(v.id)] = true;
  }
  release_after_.resize(static_cast<size_t>(g.num_nodes()));
  for (int s = 0; s < stage_count; ++s) {
    const StageInfo& st = stages_[static_cast<size_t>(s)];
    std::vector<bool> sent(static_cast<size_t>(g.num_values()), false);
    for (const auto& to : routing_.sends[static_cast<size_t>(s)])
      for (ValueId v : to) sent[static_cast<size_t>(v)] = true;
    std::map<ValueId, NodeId> last_use;
    for (NodeId n = st.first; n <= st.last; ++n)
      for (ValueId v : g.node(n).inputs) last_use[v] = n;
    for (const auto& [v, n] : last_use) {
      if (!keep[static_cast<size_t>(v)] && !sent[static_cast<size_t>(v)])
        release_after_[static_cast<size_t>(n)].push_back(v);
    }
  }
  trainable_.assign(static_cast<size_t>(g.num_values()), false);
  for (const auto& p : g.parameters()) trainable_[static_cast<size_t>(p.value)] = p.requires_grad;
  // Parameters read only as one part (every use the same split): each device trains its part as a leaf of its
  // own and adds the part's gradient into its place once per step.
  own_part_.assign(static_cast<size_t>(g.num_values()), std::nullopt);
  held_part_.assign(static_cast<size_t>(g.num_values()), std::nullopt);
  // One device per process of one tensor group: the process needs only its parts of the parameters read
  // only as one split (replicas would need theirs summed per part: they keep whole parameters).
  const bool holds_parts =
      scope_.local_device >= 0 && stage_count == 1 && stages_[0].replica_offset.size() == 1;
  for (size_t i = 0; i < g.parameters().size(); ++i) {
    const auto& p = g.parameters()[i];
    std::optional<Shard> common;
    bool only_parts = true;
    for (NodeId u : g.value(p.value).users) {
      const Node& n = g.node(u);
      const TensorShardPlan& sp =
          *stages_[static_cast<size_t>(routing_.stage_of_node[static_cast<size_t>(u)])].shards;
      for (size_t k = 0; k < n.inputs.size(); ++k) {
        if (n.inputs[k] != p.value) continue;
        const InputRewrite& rw = sp.nodes[static_cast<size_t>(n.id)].inputs[k];
        only_parts = only_parts && rw.kind == InputRewrite::Kind::kPart && (!common || *common == rw.shard);
        common = rw.shard;
      }
    }
    if (!only_parts || !common) continue;
    if (p.requires_grad) own_part_[static_cast<size_t>(p.value)] = common;
    if (holds_parts) {
      held_part_[static_cast<size_t>(p.value)] = common;
      held_parts_.push_back(HeldPart{i, *common});
    }
  }
}

void TensorRunner::hold_parts(const std::vector<torch::Tensor>& params, torch::optim::Optimizer* optimizer) {
  if (holding_parts_ || held_parts_.empty()) return;
  const int rank = scope_.local_device % stages_[0].degree, degree = stages_[0].degree;
  torch::NoGradGuard no_grad;
  const auto part = [&](const Shard& shard) {
    return [&, shard](const torch::Tensor& t) { return part_of(t, shard, rank, degree).clone(); };
  };
  for (const HeldPart& h : held_parts_) {
    const torch::Tensor& p = params.at(h.parameter);
    // Cut once: a model whose parameters are parts already (another engine cut them) would be cut again.
    const auto& whole = model_.ir.value(model_.ir.parameters()[h.parameter].value).meta();
    PARTITA_ASSERT(whole && p.sizes().vec() == whole->shape, "parameter ", h.parameter, " has shape ",
                   p.sizes(), ", not its whole one: are its parts held already?");
    if (optimizer != nullptr) map_parameter_state(*optimizer, p, part(h.shard));
    p.set_data(part(h.shard)(p));
    if (p.grad().defined()) p.mutable_grad() = part(h.shard)(p.grad());
  }
  holding_parts_ = true;
}

void TensorRunner::hold_whole(const std::vector<torch::Tensor>& params, torch::optim::Optimizer* optimizer,
                              int step) {
  if (!holding_parts_) return;
  torch::NoGradGuard no_grad;
  // Every device's part through the link (one length on all: the splits are even), put back in place.
  const auto whole = [&](const Shard& shard) {
    return [&, shard](const torch::Tensor& t) {
      std::vector<uint64_t> tags;  // the gathers pair up by their order alone (see below)
      return whole_of(scope_.link->all_gather(0, t.detach().to(torch::kCPU), tags, step), shard, t.device());
    };
  };
  for (const HeldPart& h : held_parts_) {
    const torch::Tensor& p = params.at(h.parameter);
    // Every device keeps state for the same parameters (it steps them alike), so the gathers pair up.
    if (optimizer != nullptr) map_parameter_state(*optimizer, p, whole(h.shard));
    p.set_data(whole(h.shard)(p));
    p.mutable_grad().reset();
  }
  holding_parts_ = false;
}

void TensorRunner::begin_step(const StepInputs& batch, int step) {
  batch_ = &batch;
  offloaded_.assign(bindings_.size(), OffloadedActivations{});
  step_ = step;
  for (auto& st : stages_) {
    for (auto& e : st.exchanges) e->reset(step);
  }
  values_.reset();
  gradients_.reset();
  outputs_.assign(static_cast<size_t>(plan_.microbatches),
                  std::vector<std::vector<torch::Tensor>>(stages_.back().exchanges.size()));
}

void TensorRunner::abort() {
  for (auto& st : stages_) {
    for (auto& e : st.exchanges) e->abort();
  }
  values_.abort();
  gradients_.abort();
}

TensorRunner::BoardKey TensorRunner::board_key(int microbatch, ValueId value, int to_stage, int replica) {
  return {microbatch, value, to_stage, replica};
}

bool TensorRunner::resharded(int from, int to) const {
  return stages_[static_cast<size_t>(from)].replica_offset.size() > 1 ||
         stages_[static_cast<size_t>(to)].replica_offset.size() > 1;
}

bool TensorRunner::by_rows(int from, int to, ValueId v) const {
  return resharded(from, to) && routing_.batch_major[static_cast<size_t>(v)];
}

bool TensorRunner::run(int worker, const TensorExecutors& executors, double& loss) {
  std::optional<torch::NoGradGuard> no_grad;
  if (!training_) no_grad.emplace();
  const Place at = place_of(worker);
  try {
    std::map<ValueId, OwnPart> parts;
    std::vector<MicrobatchState> states(static_cast<size_t>(plan_.microbatches));
    // The plan's schedule (GPipe or 1F1B) for this stage, as the pipeline engine runs it; every device of a
    // stage follows the same order, so its collectives meet. One stage under 1F1B: each microbatch's
    // backward right after its forward.
    const int stage_count = static_cast<int>(stages_.size());
    // Across processes, the stage's first device alone talks to the other stages' processes.
    const bool talks = scope_.local_stage >= 0 && at.rank == 0 && at.replica == 0;
    if (talks) scope_.transport->begin_step(step_);
    for (const ScheduledTask& task :
         stage_schedule(plan_.schedule, at.stage, stage_count, plan_.microbatches, training_)) {
      const int m = task.microbatch;
      MicrobatchState& state = states[static_cast<size_t>(m)];
      if (task.backward) {
        if (talks) receive_remote(at.stage, m, /*backward=*/true);
        backward(at, executors, m, state, parts, loss);
        if (talks) send_remote(at.stage, m, /*backward=*/true);
      } else {
        if (talks) receive_remote(at.stage, m, /*backward=*/false);
        forward(at, executors, m, state, parts, /*recompute=*/false);
        if (talks) send_remote(at.stage, m, /*backward=*/false);
      }
    }
    if (talks) scope_.transport->finish_step();
    torch::NoGradGuard writes;
    for (const auto& [v, part] : parts) {
      if (!part.leaf.grad().defined()) continue;
      torch::Tensor parameter = part.parameter;
      // The first device to get here makes the step's gradient (on a GPU each device's copy gets its own);
      // replicas (and other stages reading the parameter) add their parts in turn.
      std::lock_guard<std::mutex> lock(gradient_mutex_);
      if (!parameter.grad().defined()) parameter.mutable_grad() = torch::zeros_like(parameter);
      if (held(v)) {  // the parameter is this device's part
        parameter.grad().add_(part.leaf.grad());
      } else {
        add_part(parameter.grad(), part.leaf.grad(), *own_part_[static_cast<size_t>(v)], at.rank, at.degree);
      }
    }
  } catch (const ExchangeAborted&) {
    return false;
  } catch (const c10::Error& e) {  // an ExchangeAborted thrown inside autograd's backward comes back as this
    if (std::string(e.what()).find(ExchangeAborted{}.what()) != std::string::npos) return false;
    throw;
  }
  return true;
}

// A message between stages in different processes holds, for each value that crosses from stage p to stage t
// (in routing order), the board entry of each replica of the message's sender, in replica order. Forward
// (p sends): the value as each of p's replicas posted it, None where no one reads it (a value that is not
// split by rows is read from the first replica only). Backward (t sends): each of t's replicas' gradient of
// it, None where it computed none.
void TensorRunner::receive_remote(int stage, int m, bool backward) {
  const int stage_count = static_cast<int>(stages_.size());
  for (int from = backward ? stage + 1 : 0; from < (backward ? stage_count : stage); ++from) {
    const int p = backward ? stage : from, t = backward ? from : stage;
    const std::vector<ValueId>& values = routing_.sends[static_cast<size_t>(p)][static_cast<size_t>(t)];
    if (!remote(from) || values.empty()) continue;
    const size_t replicas = stages_[static_cast<size_t>(from)].replica_offset.size();
    const std::vector<c10::IValue> got =
        scope_.transport->receive({from, stage, m, backward}, values.size() * replicas);
    Board& board = backward ? gradients_ : values_;
    for (size_t i = 0; i < values.size(); ++i) {
      for (size_t k = 0; k < replicas; ++k)
        board.put(board_key(m, values[i], t, static_cast<int>(k)), got.at(i * replicas + k));
    }
  }
}

void TensorRunner::send_remote(int stage, int m, bool backward) {
  const int stage_count = static_cast<int>(stages_.size());
  const size_t replicas = stages_[static_cast<size_t>(stage)].replica_offset.size();
  for (int to = backward ? 0 : stage + 1; to < (backward ? stage : stage_count); ++to) {
    const int p = backward ? to : stage, t = backward ? stage : to;
    const std::vector<ValueId>& values = routing_.sends[static_cast<size_t>(p)][static_cast<size_t>(t)];
    if (!remote(to) || values.empty()) continue;
    Board& board = backward ? gradients_ : values_;
    std::vector<c10::IValue> message;
    for (ValueId v : values) {
      for (size_t k = 0; k < replicas; ++k) {
        const bool read = backward || k == 0 || by_rows(p, t, v);
        message.push_back(read ? board.get(board_key(m, v, t, static_cast<int>(k))) : c10::IValue());
      }
    }
    scope_.transport->send(message, {stage, to, m, backward});
  }
}

TensorRunner::Place TensorRunner::place_of(int worker) const {
  Place at;
  at.worker = worker;
  at.stage = worker_stage_.at(static_cast<size_t>(worker));
  const StageInfo& st = stages_[static_cast<size_t>(at.stage)];
  const int device = worker_device_[static_cast<size_t>(worker)];
  at.degree = st.degree;
  at.rank = device % st.degree;
  at.replica = device / st.degree;
  return at;
}

c10::IValue TensorRunner::rewrite(const Place& at, int m, const Node& node, size_t input,
                                  const c10::IValue& value, std::map<ValueId, torch::Tensor>& entered,
                                  std::map<ValueId, OwnPart>& parts) const {
  const StageInfo& st = stages_[static_cast<size_t>(at.stage)];
  const TensorShardPlan& shards = *st.shards;
  const NodeShard& ns = shards.nodes[static_cast<size_t>(node.id)];
  const InputRewrite& rw = ns.inputs[input];
  const ValueId v = node.inputs[input];
  const int degree = at.degree, rank = at.rank;
  PartExchange* exchange = st.exchanges[static_cast<size_t>(at.replica)].get();
  // A replicated tensor that needs a gradient and meets split work: its gradient is all-reduced.
  auto enter = [&](const torch::Tensor& t) -> torch::Tensor {
    if (!training_ || trainable_[static_cast<size_t>(v)] || shards.shard[static_cast<size_t>(v)].split() ||
        !t.requires_grad())
      return t;
    auto it = entered.find(v);
    if (it != entered.end()) return it->second;
    const Collective c{exchange, key_of(m, CollectiveKind::kReduceGradient, v), rank, degree, {}};
    return entered[v] = EnterSplit::apply(t, c);
  };
  switch (rw.kind) {
    case InputRewrite::Kind::kAsIs: {
      if (!value.isTensor()) return value;
      const torch::Tensor& t = value.toTensor();
      if (ns.splits) return enter(t);
      // A replicated parameter read by a replicated node: every device computes the same gradient, the
      // first one's counts. The others read a detached leaf of their own (still needing a gradient, so what
      // they compute from it needs one on every device alike) whose gradient is dropped with it. (Not an
      // autograd function over the parameter: those would attach several threads' nodes to its one
      // gradient accumulator, which LibTorch marks without a lock.)
      if (training_ && rank > 0 && trainable_[static_cast<size_t>(v)]) return t.detach().requires_grad_();
      return value;
    }
    case InputRewrite::Kind::kPart: {
      if (training_ && own_part_[static_cast<size_t>(v)]) {
        auto it = parts.find(v);
        if (it == parts.end()) {
          const torch::Tensor& parameter = value.toTensor();
          torch::Tensor leaf =
              (held(v) ? parameter.detach() : part_of(parameter.detach(), rw.shard, rank, degree))
                  .requires_grad_();
          it = parts.emplace(v, OwnPart{parameter, std::move(leaf)}).first;
        }
        return it->second.leaf;
      }
      if (held(v)) return value;  // already this device's part
      return part_of(enter(value.toTensor()), rw.shard, rank, degree);
    }
    case InputRewrite::Kind::kFirstDeviceOnly:
      return rank == 0 ? value : c10::IValue();
    case InputRewrite::Kind::kZeroOnOthers:
      return rank == 0 ? value : c10::IValue(torch::zeros_like(value.toTensor()));
    case InputRewrite::Kind::kDivide: {
      const int64_t n = value.toInt();
      PARTITA_CHECK(n % degree == 0, describe_node(node), ": size ", n, " does not split into ", degree,
                    " parts");
      return c10::IValue(n / degree);
    }
    case InputRewrite::Kind::kDivideEntry: {
      std::vector<int64_t> shape = value.toIntVector();
      int64_t& e = shape.at(static_cast<size_t>(rw.entry));
      if (e != -1) {
        PARTITA_CHECK(e % degree == 0, describe_node(node), ": shape entry ", e, " does not split into ",
                      degree, " parts");
        e /= degree;
      }
      return c10::IValue(shape);
    }
  }
  return value;
}

void TensorRunner::forward(const Place& at, const TensorExecutors& ex, int m, MicrobatchState& state,
                           std::map<ValueId, OwnPart>& parts, bool recompute) {
  const Graph& g = model_.ir;
  const StageInfo& st = stages_[static_cast<size_t>(at.stage)];
  const Stage& stage = plan_.stages[static_cast<size_t>(at.stage)];
  // A checkpointed stage's first forward runs without autograd and keeps nothing; backward runs it again
  // with autograd (recompute) before going back through it.
  const bool checkpointed = training_ && stage.checkpointing == Checkpointing::kFull;
  const bool keeps = training_ && (!checkpointed || recompute);
  const TensorShardPlan& shards = *st.shards;
  const DeviceBinding& binding = bindings_[static_cast<size_t>(at.worker)];
  const int degree = at.degree, rank = at.rank;
  const size_t replica = static_cast<size_t>(at.replica);
  const int stage_count = static_cast<int>(stages_.size());
  const bool last_stage = at.stage == stage_count - 1;
  PartExchange* exchange = st.exchanges[replica].get();
  // This replica's samples of microbatch m.
  const int64_t first = static_cast<int64_t>(m) * plan_.microbatch_size() + st.replica_offset[replica];
  // A shared input (Value::shared) whole.
  auto slice = [&](const torch::Tensor& t, size_t input) {
    if (model_.ir.value(model_.ir.inputs()[input]).shared) return t.to(binding.device);
    return t.narrow(0, first, st.replica_share[replica]).to(binding.device);
  };
  std::vector<c10::IValue> inputs;
  for (size_t i = 0; i < batch_->inputs.size(); ++i) inputs.emplace_back(slice(batch_->inputs[i], i));
  Executor::Environment env = ex.own.make_environment(inputs);
  // What earlier stages send: every device of this stage reads the same message (a copy where a node here
  // updates it in place); in training each tensor becomes a leaf whose gradient goes back.
  // A batch-major value between stages whose replicas hold different samples comes as this replica's rows
  // from the replicas that hold them; any other value whole from the sending stage's first replica.
  const int lo = st.replica_offset[replica], hi = lo + st.replica_share[replica];
  for (int p = 0; p < at.stage; ++p) {
    const StageInfo& from = stages_[static_cast<size_t>(p)];
    for (ValueId v : routing_.sends[static_cast<size_t>(p)][static_cast<size_t>(at.stage)]) {
      c10::IValue iv;
      if (by_rows(p, at.stage, v)) {
        std::vector<torch::Tensor> pieces;
        for (size_t k = 0; k < from.replica_offset.size(); ++k) {
          const int a = std::max(lo, from.replica_offset[k]);
          const int b = std::min(hi, from.replica_offset[k] + from.replica_share[k]);
          if (a >= b) continue;
          const torch::Tensor rows = values_.get(board_key(m, v, at.stage, static_cast<int>(k))).toTensor();
          pieces.push_back(rows.narrow(0, a - from.replica_offset[k], b - a).to(binding.device));
        }
        iv = pieces.size() == 1 ? pieces[0] : torch::cat(pieces, 0);
      } else {
        iv = values_.get(board_key(m, v, at.stage, 0));
      }
      if (iv.isTensor() && iv.toTensor().defined()) {
        torch::Tensor t = iv.toTensor().to(binding.device);
        if (routing_.mutated[static_cast<size_t>(at.stage)][static_cast<size_t>(v)]) t = t.detach().clone();
        if (keeps && t.is_floating_point()) {
          t = t.detach().requires_grad_();
          state.received.push_back(Received{v, t});
        }
        iv = t;
      }
      env[static_cast<size_t>(v)] = std::move(iv);
    }
  }
  std::map<ValueId, torch::Tensor> entered;  // replicated tensors already wrapped by EnterSplit

  TaskEvent fwd{EngineTaskKind::kForward, at.stage, at.worker, binding.id, m, step_, {}, {}};
  if (!recompute) notify_task(observers_, fwd, true);  // a recompute is part of the backward's task
  std::optional<torch::NoGradGuard> no_grad;
  if (checkpointed && !recompute) {
    no_grad.emplace();
    state.draws = draws_state({&ex.own, &ex.group});
  }
  // Activation offload covers the forward that autograd records (and the loss): what it saves goes to host
  // memory; the values held until backward anyway (parameters, received values, weight parts) stay.
  std::optional<ActivationOffloadScope> offload;
  if (keeps && offloads_activations(stage.offload)) {
    std::vector<torch::Tensor> held;
    for (size_t v = 0; v < env.size(); ++v) {
      if (!env[v].isTensor() || !env[v].toTensor().defined()) continue;
      if (std::find(g.inputs().begin(), g.inputs().end(), static_cast<ValueId>(v)) != g.inputs().end())
        continue;
      held.push_back(env[v].toTensor());
    }
    for (const auto& [v, part] : parts) held.push_back(part.leaf);
    offload.emplace(held, offloaded_[static_cast<size_t>(at.worker)]);
  }
  for (NodeId id = st.first; id <= st.last; ++id) {
    const Node& node = g.node(id);
    const NodeShard& ns = shards.nodes[static_cast<size_t>(id)];
    std::vector<c10::IValue> args;
    args.reserve(node.inputs.size());
    for (size_t i = 0; i < node.inputs.size(); ++i)
      args.push_back(rewrite(at, m, node, i, env[static_cast<size_t>(node.inputs[i])], entered, parts));
    torch::Tensor inside;  // vocabulary: which ids fall in this device's rows
    if (ns.vocabulary) {
      const int64_t rows = args[0].toTensor().size(0);
      const torch::Tensor local = args[1].toTensor() - rank * rows;
      inside = local.ge(0).logical_and(local.lt(rows));
      args[1] = local.masked_fill(inside.logical_not(), 0);
    }
    std::vector<c10::IValue> outs;
    try {
      outs = (ns.splits ? ex.own : ex.group).run_node(id, std::move(args));
    } catch (const Error& err) {
      throw Error("stage " + std::to_string(at.stage) + " on " + binding.id + ": " + err.what());
    }
    if (ns.vocabulary)
      outs[0] = outs[0].toTensor() * inside.unsqueeze(-1).to(outs[0].toTensor().scalar_type());
    if (ns.all_reduce) {
      const Collective c{exchange, key_of(m, CollectiveKind::kReduceOutput, id, recompute), rank, degree, {}};
      outs[0] = AllReduceSum::apply(outs[0].toTensor(), c);
    }
    if (ns.scale_output_entry == -1) {
      outs[0] = c10::IValue(outs[0].toInt() * degree);
    } else if (ns.scale_output_entry >= 0) {
      std::vector<int64_t> sizes = outs[0].toIntVector();
      sizes.at(static_cast<size_t>(ns.scale_output_entry)) *= degree;
      outs[0] = c10::IValue(sizes);
    }
    for (size_t o = 0; o < node.outputs.size() && o < outs.size(); ++o)
      env[static_cast<size_t>(node.outputs[o])] = std::move(outs[o]);
    for (ValueId v : release_after_[static_cast<size_t>(id)]) {
      env[static_cast<size_t>(v)] = c10::IValue();
      entered.erase(v);
    }
  }
  entered.clear();
  // To later stages: the first device posts, every device keeps its own copy to run backward from.
  for (int t = at.stage + 1; t < stage_count; ++t) {
    for (ValueId v : routing_.sends[static_cast<size_t>(at.stage)][static_cast<size_t>(t)]) {
      const c10::IValue& iv = env[static_cast<size_t>(v)];
      if (rank == 0 && !recompute) values_.put(board_key(m, v, t, static_cast<int>(replica)), iv);
      const bool tensor = iv.isTensor() && iv.toTensor().defined();
      // The first forward of a checkpointed stage keeps what it sent without history, so backward can
      // collect the gradients for it before recomputing.
      if (keeps ? tensor && iv.toTensor().requires_grad()
                : checkpointed && tensor && iv.toTensor().is_floating_point())
        state.sent.push_back(Sent{t, v, iv.toTensor()});
    }
  }
  if (last_stage) {
    std::vector<c10::IValue> results;
    for (size_t k = 0; k < g.outputs().size(); ++k) {
      c10::IValue iv = env[static_cast<size_t>(g.outputs()[k])];
      if (shards.gather[k]) {
        const Shard s = shards.shard[static_cast<size_t>(g.outputs()[k])];
        const Collective c{exchange, key_of(m, CollectiveKind::kGather, static_cast<int64_t>(k), recompute),
                           rank, degree, s};
        iv = GatherSplit::apply(iv.toTensor(), c);
      }
      results.push_back(std::move(iv));
    }
    if (keeps) {
      const auto out0 = flatten_tensors(results.at(0));
      PARTITA_CHECK(!out0.empty() && out0[0].is_floating_point(),
                    "training needs a floating-point model output");
      state.loss =
          slice_loss(loss_kind_, out0[0],
                     slice_targets(batch_->targets, plan_.global_batch, first, st.replica_share[replica])
                         .to(binding.device),
                     plan_.global_batch);
    } else if (!training_ && (rank == 0 || scope_.local_device >= 0)) {
      for (const auto& r : results) {
        for (auto& t : flatten_tensors(r)) outputs_[static_cast<size_t>(m)][replica].push_back(t);
      }
    }
  }
  offload.reset();
  if (!recompute) notify_task(observers_, fwd, false);
}

void TensorRunner::backward(const Place& at, const TensorExecutors& ex, int m, MicrobatchState& state,
                            std::map<ValueId, OwnPart>& parts, double& loss) {
  const DeviceBinding& binding = bindings_[static_cast<size_t>(at.worker)];
  TaskEvent bwd{EngineTaskKind::kBackward, at.stage, at.worker, binding.id, m, step_, {}, {}};
  // Every device of this stage seeds its own copy of what it sent with the gradient the receiving stage's
  // replicas' first devices posted (the same on every device of a tensor group: what crosses is
  // replicated): its rows from the replicas that hold them (zeros where one computed none), or, for a value
  // sent whole, the sum over the receiving replicas (only the first replica's copy was sent).
  const StageInfo& here = stages_[static_cast<size_t>(at.stage)];
  const int lo = here.replica_offset[static_cast<size_t>(at.replica)];
  const int hi = lo + here.replica_share[static_cast<size_t>(at.replica)];
  const auto posted = [&](ValueId v, int to_stage, int j) {
    const c10::IValue iv = gradients_.get(board_key(m, v, to_stage, j));
    return iv.isTensor() ? iv.toTensor() : torch::Tensor();
  };
  std::vector<Sent> seeds;  // (receiving stage, value, its gradient)
  for (const Sent& s : state.sent) {
    const StageInfo& to = stages_[static_cast<size_t>(s.to_stage)];
    torch::Tensor g;
    if (by_rows(at.stage, s.to_stage, s.value)) {
      std::vector<torch::Tensor> pieces;
      bool any = false;
      for (size_t j = 0; j < to.replica_offset.size(); ++j) {
        const int a = std::max(lo, to.replica_offset[j]),
                  b = std::min(hi, to.replica_offset[j] + to.replica_share[j]);
        if (a >= b) continue;
        const torch::Tensor rows = posted(s.value, s.to_stage, static_cast<int>(j));
        any = any || rows.defined();
        pieces.push_back(rows.defined()
                             ? rows.narrow(0, a - to.replica_offset[j], b - a).to(s.tensor.device())
                             : torch::zeros_like(s.tensor.narrow(0, a - lo, b - a)));
      }
      if (any) g = pieces.size() == 1 ? pieces[0] : torch::cat(pieces, 0);
    } else if (at.replica == 0) {
      for (size_t j = 0; j < to.replica_offset.size(); ++j) {
        const torch::Tensor part = posted(s.value, s.to_stage, static_cast<int>(j));
        if (part.defined()) g = g.defined() ? g + part.to(s.tensor.device()) : part.to(s.tensor.device());
      }
    }
    if (!g.defined()) continue;
    seeds.push_back(Sent{s.to_stage, s.value, g.device() == s.tensor.device() ? g : g.to(s.tensor.device())});
  }
  notify_task(observers_, bwd, true);
  if (training_ && plan_.stages[static_cast<size_t>(at.stage)].checkpointing == Checkpointing::kFull) {
    const std::vector<torch::Tensor> draws = state.draws;
    state = MicrobatchState{};
    const ReplayDraws replay({&ex.own, &ex.group}, draws);
    forward(at, ex, m, state, parts, /*recompute=*/true);
  }
  std::vector<torch::Tensor> roots, grads;
  if (state.loss.defined()) {
    roots.push_back(state.loss);
    grads.push_back(torch::ones_like(state.loss));
  }
  for (const Sent& seed : seeds) {
    const auto sent = std::find_if(state.sent.begin(), state.sent.end(), [&](const Sent& s) {
      return s.to_stage == seed.to_stage && s.value == seed.value;
    });
    if (sent == state.sent.end()) continue;  // recomputed without history: nothing to go back through
    roots.push_back(sent->tensor);
    grads.push_back(seed.tensor);
  }
  if (at.rank == 0 && state.loss.defined()) loss += state.loss.item<double>();
  // backward_from holds the only references to the roots here (the value board still holds what was posted).
  state.sent.clear();
  state.loss = torch::Tensor();
  backward_from(roots, std::move(grads));
  notify_task(observers_, bwd, false);
  // Each replica's first device posts a gradient for every value its stage was sent (None where it has none:
  // not a floating-point tensor, or not reached by backward), so a message to another process can wait for
  // them all.
  if (at.rank == 0) {
    for (int p = 0; p < at.stage; ++p) {
      for (ValueId v : routing_.sends[static_cast<size_t>(p)][static_cast<size_t>(at.stage)]) {
        const auto r = std::find_if(state.received.begin(), state.received.end(),
                                    [&](const Received& x) { return x.value == v; });
        const bool has = r != state.received.end() && r->leaf.grad().defined();
        gradients_.put(board_key(m, v, at.stage, at.replica),
                       has ? c10::IValue(r->leaf.grad()) : c10::IValue());
      }
    }
  }
  state = MicrobatchState{};
}

std::vector<torch::Tensor> TensorRunner::take_outputs() {
  std::vector<torch::Tensor> out;
  if (outputs_.empty() || outputs_[0].empty()) return out;
  // Replicas that ran in other processes have none here.
  size_t count = 0;
  for (const auto& replica : outputs_[0]) count = std::max(count, replica.size());
  for (size_t k = 0; k < count; ++k) {
    std::vector<torch::Tensor> pieces;  // in sample order: microbatch by microbatch, replica by replica
    for (const auto& mb : outputs_) {
      for (const auto& replica : mb) {
        if (!replica.empty()) pieces.push_back(replica.at(k).to(torch::kCPU));
      }
    }
    out.push_back(pieces.size() == 1 ? pieces[0] : torch::cat(pieces, 0));
  }
  for (auto& mb : outputs_) {
    for (auto& replica : mb) replica.clear();
  }
  return out;
}

// Board

void TensorRunner::Board::put(const BoardKey& key, c10::IValue item) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    slots_[key] = std::move(item);
  }
  cv_.notify_all();
}

c10::IValue TensorRunner::Board::get(const BoardKey& key) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return aborted_ || slots_.count(key) > 0; });
  if (aborted_) throw ExchangeAborted{};
  return slots_.at(key);
}

void TensorRunner::Board::abort() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
  }
  cv_.notify_all();
}

void TensorRunner::Board::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  slots_.clear();
  aborted_ = false;
}

}  // namespace partita::detail

#include "engine_tensor.h"

#include <torch/autograd.h>

#include <optional>
#include <string>

#include "ivalue_tensors.h"
#include "partita/core/error.h"

namespace partita::detail {

namespace {

using Clock = std::chrono::steady_clock;
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
uint64_t key_of(int microbatch, CollectiveKind kind, int64_t id) {
  return (static_cast<uint64_t>(microbatch) << 40) | (static_cast<uint64_t>(kind) << 32) |
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

std::vector<torch::Tensor> PartExchange::all_parts(uint64_t key, int device, torch::Tensor part) {
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

void PartExchange::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  slots_.clear();
  aborted_ = false;
}

TensorRunner::TensorRunner(const LoadedModel& model, const Plan& plan, bool training, LossKind loss,
                           const std::vector<DeviceBinding>& bindings,
                           const std::vector<RuntimeObserver*>& observers)
    : model_(model),
      plan_(plan),
      training_(training),
      loss_kind_(loss),
      bindings_(bindings),
      observers_(observers),
      degree_(plan.groups.at(static_cast<size_t>(plan.stages.at(0).group)).tensor_degree()),
      shards_(plan_tensor_shards(model.ir, degree_)) {
  const Graph& g = model.ir;
  const DeviceGroup& group = plan.groups[static_cast<size_t>(plan.stages[0].group)];
  PARTITA_ASSERT(static_cast<int>(bindings.size()) == static_cast<int>(group.devices.size()) &&
                     group.devices.size() % static_cast<size_t>(degree_) == 0,
                 "tensor group of ", group.devices.size(), " devices, ", bindings.size(), " bindings");
  int offset = 0;
  for (size_t d = 0; d < group.devices.size(); d += static_cast<size_t>(degree_)) {
    replica_offset_.push_back(offset);
    replica_share_.push_back(group.batch_shares[d]);
    offset += group.batch_shares[d];
    exchanges_.push_back(std::make_unique<PartExchange>(degree_));
  }
  PARTITA_CHECK(offset == plan.microbatch_size(), "the tensor group's replicas hold ", offset,
                " samples of each microbatch of ", plan.microbatch_size(), "; plan again");
  std::vector<NodeId> last_use(static_cast<size_t>(g.num_values()), kNoNode);
  for (const Node& n : g.nodes()) {
    for (ValueId v : n.inputs)
      last_use[static_cast<size_t>(v)] = std::max(last_use[static_cast<size_t>(v)], n.id);
  }
  std::vector<bool> keep(static_cast<size_t>(g.num_values()), false);
  for (ValueId v : g.outputs()) keep[static_cast<size_t>(v)] = true;
  for (const Value& v : g.values()) {
    if (v.role != ValueRole::kIntermediate) keep[static_cast<size_t>(v.id)] = true;
  }
  release_after_.resize(static_cast<size_t>(g.num_nodes()));
  for (const Value& v : g.values()) {
    const NodeId last = last_use[static_cast<size_t>(v.id)];
    if (keep[static_cast<size_t>(v.id)] || last == kNoNode) continue;
    release_after_[static_cast<size_t>(last)].push_back(v.id);
  }
  trainable_.assign(static_cast<size_t>(g.num_values()), false);
  for (const auto& p : g.parameters()) trainable_[static_cast<size_t>(p.value)] = p.requires_grad;
  // Parameters read only as one part (every use the same split): each device trains its part as a leaf of its
  // own and writes the part's gradient into its place once per step.
  own_part_.assign(static_cast<size_t>(g.num_values()), std::nullopt);
  for (const auto& p : g.parameters()) {
    if (!p.requires_grad) continue;
    std::optional<Shard> common;
    bool only_parts = true;
    for (const Node& n : g.nodes()) {
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        if (n.inputs[i] != p.value) continue;
        const InputRewrite& rw = shards_.nodes[static_cast<size_t>(n.id)].inputs[i];
        only_parts = only_parts && rw.kind == InputRewrite::Kind::kPart && (!common || *common == rw.shard);
        common = rw.shard;
      }
    }
    if (only_parts && common) own_part_[static_cast<size_t>(p.value)] = common;
  }
}

void TensorRunner::begin_step(const StepInputs& batch, int step) {
  batch_ = &batch;
  step_ = step;
  for (auto& e : exchanges_) e->reset();
  outputs_.assign(static_cast<size_t>(plan_.microbatches),
                  std::vector<std::vector<torch::Tensor>>(exchanges_.size()));
}

void TensorRunner::abort() {
  for (auto& e : exchanges_) e->abort();
}

void TensorRunner::emit(TaskEvent& e, bool begin) const {
  if (begin) {
    e.begin = Clock::now();
    for (auto* o : observers_) o->on_task_begin(e);
  } else {
    e.end = Clock::now();
    for (auto* o : observers_) o->on_task_end(e);
  }
}

bool TensorRunner::run(int device, const Executor& executor, double& loss) {
  std::optional<torch::NoGradGuard> no_grad;
  if (!training_) no_grad.emplace();
  try {
    std::map<ValueId, OwnPart> parts;
    for (int m = 0; m < plan_.microbatches; ++m) microbatch(device, executor, m, loss, parts);
    torch::NoGradGuard writes;
    for (const auto& [v, part] : parts) {
      if (!part.leaf.grad().defined()) continue;
      torch::Tensor parameter = part.parameter;
      // The first device to get here makes the step's gradient (on a GPU each device's copy gets its own);
      // replicas add their parts in turn.
      std::lock_guard<std::mutex> lock(gradient_mutex_);
      if (!parameter.grad().defined()) parameter.mutable_grad() = torch::zeros_like(parameter);
      add_part(parameter.grad(), part.leaf.grad(), *own_part_[static_cast<size_t>(v)], device % degree_,
               degree_);
    }
  } catch (const ExchangeAborted&) {
    return false;
  } catch (const c10::Error& e) {  // an ExchangeAborted thrown inside autograd's backward comes back as this
    if (std::string(e.what()).find(ExchangeAborted{}.what()) != std::string::npos) return false;
    throw;
  }
  return true;
}

c10::IValue TensorRunner::rewrite(int device, int m, const Node& node, size_t input, const c10::IValue& value,
                                  std::map<ValueId, torch::Tensor>& entered,
                                  std::map<ValueId, OwnPart>& parts) const {
  const NodeShard& ns = shards_.nodes[static_cast<size_t>(node.id)];
  const InputRewrite& rw = ns.inputs[input];
  const ValueId v = node.inputs[input];
  const int degree = degree_, rank = device % degree_;
  PartExchange* exchange = exchanges_[static_cast<size_t>(device / degree_)].get();
  // A replicated tensor that needs a gradient and meets split work: its gradient is all-reduced.
  auto enter = [&](const torch::Tensor& t) -> torch::Tensor {
    if (!training_ || trainable_[static_cast<size_t>(v)] || shards_.shard[static_cast<size_t>(v)].split() ||
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
          torch::Tensor leaf = part_of(parameter.detach(), rw.shard, rank, degree).requires_grad_();
          it = parts.emplace(v, OwnPart{parameter, std::move(leaf)}).first;
        }
        return it->second.leaf;
      }
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

void TensorRunner::microbatch(int device, const Executor& executor, int m, double& loss,
                              std::map<ValueId, OwnPart>& parts) {
  const Graph& g = model_.ir;
  const DeviceBinding& binding = bindings_[static_cast<size_t>(device)];
  const int degree = degree_, rank = device % degree_;
  const size_t replica = static_cast<size_t>(device / degree_);
  PartExchange* exchange = exchanges_[replica].get();
  // This replica's samples of microbatch m.
  const int64_t first = static_cast<int64_t>(m) * plan_.microbatch_size() + replica_offset_[replica];
  auto slice = [&](const torch::Tensor& t) {
    return t.narrow(0, first, replica_share_[replica]).to(binding.device);
  };
  std::vector<c10::IValue> inputs;
  for (const auto& t : batch_->inputs) inputs.emplace_back(slice(t));
  Executor::Environment env = executor.make_environment(inputs);
  std::map<ValueId, torch::Tensor> entered;  // replicated tensors already wrapped by EnterSplit

  TaskEvent fwd{EngineTaskKind::kForward, 0, device, binding.id, m, step_, {}, {}};
  emit(fwd, true);
  for (const Node& node : g.nodes()) {
    const NodeShard& ns = shards_.nodes[static_cast<size_t>(node.id)];
    std::vector<c10::IValue> args;
    args.reserve(node.inputs.size());
    for (size_t i = 0; i < node.inputs.size(); ++i)
      args.push_back(rewrite(device, m, node, i, env[static_cast<size_t>(node.inputs[i])], entered, parts));
    torch::Tensor inside;  // vocabulary: which ids fall in this device's rows
    if (ns.vocabulary) {
      const int64_t rows = args[0].toTensor().size(0);
      const torch::Tensor local = args[1].toTensor() - rank * rows;
      inside = local.ge(0).logical_and(local.lt(rows));
      args[1] = local.masked_fill(inside.logical_not(), 0);
    }
    std::vector<c10::IValue> outs;
    try {
      outs = executor.run_node(node.id, std::move(args));
    } catch (const Error& err) {
      throw Error("tensor-parallel device " + binding.id + ": " + err.what());
    }
    if (ns.vocabulary)
      outs[0] = outs[0].toTensor() * inside.unsqueeze(-1).to(outs[0].toTensor().scalar_type());
    if (ns.all_reduce) {
      const Collective c{exchange, key_of(m, CollectiveKind::kReduceOutput, node.id), rank, degree, {}};
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
    for (ValueId v : release_after_[static_cast<size_t>(node.id)]) {
      env[static_cast<size_t>(v)] = c10::IValue();
      entered.erase(v);
    }
  }
  entered.clear();
  std::vector<c10::IValue> results;
  for (size_t k = 0; k < g.outputs().size(); ++k) {
    c10::IValue iv = env[static_cast<size_t>(g.outputs()[k])];
    if (shards_.gather[k]) {
      const Shard s = shards_.shard[static_cast<size_t>(g.outputs()[k])];
      const Collective c{exchange, key_of(m, CollectiveKind::kGather, static_cast<int64_t>(k)), rank, degree,
                         s};
      iv = GatherSplit::apply(iv.toTensor(), c);
    }
    results.push_back(std::move(iv));
  }
  torch::Tensor step_loss;
  if (training_) {
    const auto out0 = flatten_tensors(results.at(0));
    PARTITA_CHECK(!out0.empty() && out0[0].is_floating_point(),
                  "training needs a floating-point model output");
    step_loss = slice_loss(loss_kind_, out0[0], slice(batch_->targets), plan_.global_batch);
  } else if (rank == 0) {
    for (const auto& r : results) {
      for (auto& t : flatten_tensors(r)) outputs_[static_cast<size_t>(m)][replica].push_back(t);
    }
  }
  emit(fwd, false);
  if (!training_) return;
  results.clear();
  env.clear();
  TaskEvent bwd{EngineTaskKind::kBackward, 0, device, binding.id, m, step_, {}, {}};
  emit(bwd, true);
  step_loss.backward();
  emit(bwd, false);
  if (rank == 0) loss += step_loss.item<double>();
}

std::vector<torch::Tensor> TensorRunner::outputs() const {
  std::vector<torch::Tensor> out;
  if (outputs_.empty() || outputs_[0].empty()) return out;
  for (size_t k = 0; k < outputs_[0][0].size(); ++k) {
    std::vector<torch::Tensor> pieces;  // in sample order: microbatch by microbatch, replica by replica
    for (const auto& mb : outputs_) {
      for (const auto& replica : mb) pieces.push_back(replica.at(k).to(torch::kCPU));
    }
    out.push_back(pieces.size() == 1 ? pieces[0] : torch::cat(pieces, 0));
  }
  return out;
}

}  // namespace partita::detail

#include "engine_branch.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <queue>
#include <set>

#include <torch/torch.h>

#include "backward_from.h"
#include "ivalue_tensors.h"
#include "partita/core/error.h"
#include "partita/graph/analysis.h"

namespace partita::detail {

namespace {

bool needs_grad(const torch::Tensor& t) { return t.defined() && t.requires_grad(); }

// The tensors of `iv` that carry autograd history (the roots a segment's backward starts from).
std::vector<torch::Tensor> grad_tensors(const c10::IValue& iv) {
  std::vector<torch::Tensor> out;
  for (auto& t : flatten_tensors(iv)) {
    if (needs_grad(t)) out.push_back(t);
  }
  return out;
}

// Detaches every tensor of `iv` that carries autograd history into a leaf (same order as grad_tensors).
// A value that some node updates in place is handed on as a copy of the leaf (in-place on a leaf that
// requires grad is an error).
c10::IValue leafify(const c10::IValue& iv, bool mutated, std::vector<torch::Tensor>& leaves) {
  return map_tensors(iv, [&](const torch::Tensor& t) -> c10::IValue {
    if (!needs_grad(t)) return t;
    torch::Tensor leaf = t.detach().requires_grad_();
    leaves.push_back(leaf);
    return mutated ? leaf.clone() : leaf;
  });
}

// A value as it crosses processes: an undefined tensor travels as None (so both sides see no tensor in it).
c10::IValue crossing(const c10::IValue& iv) {
  return iv.isTensor() && !iv.toTensor().defined() ? c10::IValue() : iv;
}

}  // namespace

// ---- Mailbox ----

template <typename T>
void BranchRunner::Mailbox<T>::reset(size_t slots) {
  std::lock_guard<std::mutex> lock(mutex_);
  slots_.assign(slots, std::nullopt);
  aborted_ = false;
}

template <typename T>
void BranchRunner::Mailbox<T>::put(size_t slot, T item) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    PARTITA_ASSERT(slot < slots_.size() && !slots_[slot], "mailbox slot ", slot);
    slots_[slot] = std::move(item);
  }
  cv_.notify_all();
}

template <typename T>
T BranchRunner::Mailbox<T>::take(size_t slot) {
  std::unique_lock<std::mutex> lock(mutex_);
  PARTITA_ASSERT(slot < slots_.size(), "mailbox slot ", slot);
  cv_.wait(lock, [&] { return aborted_ || slots_[slot].has_value(); });
  if (aborted_) throw Aborted{};
  T item = std::move(*slots_[slot]);
  slots_[slot].reset();
  return item;
}

template <typename T>
void BranchRunner::Mailbox<T>::abort() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
  }
  cv_.notify_all();
}

// ---- Per-step state ----

struct BranchRunner::SegmentState {
  std::vector<std::pair<int, std::vector<torch::Tensor>>> sent;      // transfer -> tensors sent (history)
  std::vector<std::pair<int, std::vector<torch::Tensor>>> received;  // transfer -> leaves
  // Values of this segment that a later segment of the stage detached: (tensors with history, leaves).
  std::vector<std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>> kept;
  torch::Tensor loss;
};

struct BranchRunner::MicrobatchState {
  std::vector<SegmentState> segments;
};

// ---- Construction: checks and static routing ----

BranchRunner::BranchRunner(const LoadedModel& model, const Plan& plan, bool training, LossKind loss,
                           const std::vector<DeviceBinding>& bindings,
                           const std::vector<RuntimeObserver*>& observers, BranchRunnerScope scope)
    : model_(model),
      plan_(plan),
      training_(training),
      loss_kind_(loss),
      bindings_(bindings),
      observers_(observers),
      scope_(scope) {
  const Graph& g = model.ir;
  const int n = g.num_nodes();
  const int stages = static_cast<int>(plan.stages.size());
  PARTITA_CHECK(scope.local_stage < stages && (scope.local_stage < 0 || scope.transport != nullptr),
                "branch plan: a process that runs stage ", scope.local_stage, " of ", stages,
                " needs a stage of the plan and a transport to the others");
  const int bound = scope.local_stage >= 0 ? 1 : stages;
  PARTITA_CHECK(static_cast<int>(bindings.size()) == bound, "branch plan: ", bound, " stage(s) here but ",
                bindings.size(), " devices bound; every branch stage runs on one device");
  for (int s = 0; s < stages; ++s) {
    const DeviceGroup& group = plan.groups[static_cast<size_t>(plan.stages[static_cast<size_t>(s)].group)];
    PARTITA_CHECK(group.devices.size() == 1, "branch plan: stage ", s, " runs on ", group.devices.size(),
                  " devices; a branch stage runs on one device");
    PARTITA_CHECK(plan.stages[static_cast<size_t>(s)].checkpointing == Checkpointing::kNone,
                  "branch plan: stage ", s,
                  " asks for activation checkpointing, which branch-parallel plans "
                  "do not run yet; plan without a memory limit or with --strategy pipeline");
  }
  std::vector<int> stage_of(static_cast<size_t>(n), -1), pos_of(static_cast<size_t>(n), -1);
  for (int s = 0; s < stages; ++s) {
    const auto& nodes = plan.stages[static_cast<size_t>(s)].nodes;
    for (size_t k = 0; k < nodes.size(); ++k) {
      stage_of[static_cast<size_t>(nodes[k])] = s;
      pos_of[static_cast<size_t>(nodes[k])] = static_cast<int>(k);
    }
  }
  // The devices wait on each other: the data edges and every list's order together must be acyclic.
  {
    std::vector<std::vector<NodeId>> succ(static_cast<size_t>(n));
    std::vector<int> indeg(static_cast<size_t>(n), 0);
    auto edge = [&](NodeId a, NodeId b) {
      succ[static_cast<size_t>(a)].push_back(b);
      ++indeg[static_cast<size_t>(b)];
    };
    for (const Node& node : g.nodes()) {
      for (ValueId v : node.inputs) {
        if (g.value(v).producer != kNoNode) edge(g.value(v).producer, node.id);
      }
    }
    for (const Stage& st : plan.stages) {
      for (size_t k = 1; k < st.nodes.size(); ++k) edge(st.nodes[k - 1], st.nodes[k]);
    }
    std::queue<NodeId> ready;
    for (NodeId i = 0; i < n; ++i) {
      if (indeg[static_cast<size_t>(i)] == 0) ready.push(i);
    }
    int done = 0;
    while (!ready.empty()) {
      const NodeId u = ready.front();
      ready.pop();
      ++done;
      for (NodeId v : succ[static_cast<size_t>(u)]) {
        if (--indeg[static_cast<size_t>(v)] == 0) ready.push(v);
      }
    }
    PARTITA_CHECK(done == n, "branch plan: the stages' node lists contradict the graph's data dependencies (",
                  n - done, " nodes on a cycle: the devices would wait on each other); plan again");
  }
  // In-place writes (graph/analysis.h's written_storages). A value made before a write into its storage is
  // copied when it crosses devices (the other device must see it as it was made), and on every device the
  // storage's readers keep their node order relative to its writes. A node that must see a write made through
  // another value (first_read_seeing_a_write: head(z) after z[:, 16:] = b; a trace orders them only by node
  // id) would need the storage as one tensor across devices and across this runner's segments, which detach
  // what enters them: refused (branch_candidates offers no branch plan for such a model).
  mutated_.assign(static_cast<size_t>(g.num_values()), false);
  const NodeId sees_write = first_read_seeing_a_write(g);
  PARTITA_CHECK(sees_write == kNoNode, "branch plan: ", describe_node(g.node(sees_write)),
                " reads storage after an in-place write into it through another value, which branch-parallel "
                "plans do not run; plan with --strategy pipeline or data");
  for (const WrittenStorage& s : written_storages(g)) {
    const std::string storage = "'" + g.value(s.root).name + "'";
    for (ValueId v : s.members) {
      if (g.value(v).producer < s.writes.back()) mutated_[static_cast<size_t>(v)] = true;
    }
    for (NodeId w : s.writes) {
      for (ValueId v : s.members) {
        for (NodeId u : g.value(v).users) {
          if (u == w || stage_of[static_cast<size_t>(u)] != stage_of[static_cast<size_t>(w)]) continue;
          PARTITA_CHECK((pos_of[static_cast<size_t>(u)] < pos_of[static_cast<size_t>(w)]) == (u < w),
                        "branch plan: ", describe_node(g.node(u)), " reads the storage of ", storage,
                        u < w ? " after " : " before ", describe_node(g.node(w)),
                        " writes it in place on the same device; plan again");
        }
      }
    }
  }
  // Transfers: one per (value, consumer device other than the producer's).
  std::vector<std::map<int, int>> transfer_of(static_cast<size_t>(g.num_values()));  // [value] to -> index
  for (const Value& v : g.values()) {
    if (v.producer == kNoNode) continue;  // inputs, parameters and constants are on every device
    const int from = stage_of[static_cast<size_t>(v.producer)];
    std::set<int> to;
    for (NodeId u : v.users) {
      if (stage_of[static_cast<size_t>(u)] != from) to.insert(stage_of[static_cast<size_t>(u)]);
    }
    for (int t : to) {
      transfer_of[static_cast<size_t>(v.id)][t] = static_cast<int>(transfers_.size());
      transfers_.push_back(Transfer{v.id, from, t, mutated_[static_cast<size_t>(v.id)]});
    }
  }
  // Across processes only tensors, numbers, None and lists or tuples of them travel (stage_transport.h).
  // Every process checks every transfer, so all of them refuse the same plan.
  for (const Transfer& tr : transfers_) {
    if (scope.local_stage < 0) break;
    const Value& value = g.value(tr.value);
    PARTITA_CHECK(value.kind != ValueKind::kOther, "branch plan: value '", value.name,
                  "' (not a tensor, a number or a list or tuple of them) goes from stage ", tr.from,
                  " to stage ", tr.to,
                  ", which cannot travel between processes; run the plan in one process or plan with "
                  "--strategy pipeline");
  }
  std::vector<int> output_stage(g.outputs().size(), 0);
  for (size_t i = 0; i < g.outputs().size(); ++i) {
    const NodeId p = g.value(g.outputs()[i]).producer;
    output_stage[i] = p == kNoNode ? 0 : stage_of[static_cast<size_t>(p)];
  }
  std::set<ValueId> graph_outputs(g.outputs().begin(), g.outputs().end());
  if (training) {
    PARTITA_CHECK(!g.outputs().empty() && g.value(g.outputs()[0]).producer != kNoNode,
                  "training needs a model output computed by the model");
  }
  for (int s = 0; s < stages; ++s) {
    StagePlan sp;
    sp.nodes = plan.stages[static_cast<size_t>(s)].nodes;
    const size_t count = sp.nodes.size();
    sp.send_after.assign(count, {});
    sp.release_after.assign(count, {});
    std::set<ValueId> received, detached;
    std::map<ValueId, int> local_segment;  // value produced here -> its segment
    bool sent_before = false;              // training: the previous node sent an output (cut after it)
    for (size_t k = 0; k < count; ++k) {
      const Node& node = g.node(sp.nodes[k]);
      std::vector<int> waits;
      for (ValueId v : node.inputs) {
        const NodeId p = g.value(v).producer;
        if (p == kNoNode || stage_of[static_cast<size_t>(p)] == s || received.count(v)) continue;
        received.insert(v);
        waits.push_back(transfer_of[static_cast<size_t>(v)].at(s));
      }
      if (sp.segments.empty() || !waits.empty() || sent_before) {
        if (!sp.segments.empty()) sp.segments.back().end = k;
        sp.segments.push_back(Segment{k, count, {}, {}});
      }
      Segment& seg = sp.segments.back();
      const int seg_index = static_cast<int>(sp.segments.size()) - 1;
      seg.receive.insert(seg.receive.end(), waits.begin(), waits.end());
      for (ValueId v : node.inputs) {
        auto it = local_segment.find(v);
        if (it != local_segment.end() && it->second < seg_index && detached.insert(v).second)
          seg.detach.emplace_back(v, it->second);
      }
      for (ValueId v : node.outputs) {
        local_segment[v] = seg_index;
        for (const auto& entry : transfer_of[static_cast<size_t>(v)])
          sp.send_after[k].push_back(entry.second);
      }
      sent_before = training && !sp.send_after[k].empty();
    }
    // Releases: at the last use on this stage; outputs nobody here reads, right after they are sent.
    std::map<ValueId, size_t> last_use;
    for (size_t k = 0; k < count; ++k) {
      for (ValueId v : g.node(sp.nodes[k]).inputs) last_use[v] = k;
    }
    auto releasable = [&](ValueId v) {
      return g.value(v).role == ValueRole::kIntermediate && !graph_outputs.count(v);
    };
    for (const auto& [v, k] : last_use) {
      if (releasable(v)) sp.release_after[k].push_back(v);
    }
    for (size_t k = 0; k < count; ++k) {
      for (ValueId v : g.node(sp.nodes[k]).outputs) {
        if (releasable(v) && !last_use.count(v)) sp.release_after[k].push_back(v);
      }
    }
    for (size_t i = 0; i < g.outputs().size(); ++i) {
      if (output_stage[i] == s) sp.outputs.push_back(static_cast<int>(i));
    }
    if (training && output_stage[0] == s)
      sp.loss_position = pos_of[static_cast<size_t>(g.value(g.outputs()[0]).producer)];
    stages_.push_back(std::move(sp));
  }
}

// ---- Step ----

void BranchRunner::begin_step(const StepInputs& batch, int step) {
  batch_ = &batch;
  step_ = step;
  const size_t slots = static_cast<size_t>(plan_.microbatches) * transfers_.size();
  values_.reset(slots);
  gradients_.reset(slots);
  outputs_.assign(static_cast<size_t>(plan_.microbatches),
                  std::vector<std::vector<torch::Tensor>>(model_.ir.outputs().size()));
}

void BranchRunner::abort() {
  values_.abort();
  gradients_.abort();
}

const DeviceBinding& BranchRunner::binding(int stage) const {
  PARTITA_ASSERT(!remote(stage), "stage ", stage, " runs in another process");
  return bindings_[static_cast<size_t>(scope_.local_stage >= 0 ? 0 : stage)];
}

StageMessage BranchRunner::message(int t, int microbatch, bool backward) const {
  const Transfer& tr = transfers_[static_cast<size_t>(t)];
  return StageMessage{backward ? tr.to : tr.from, backward ? tr.from : tr.to, microbatch, backward, t};
}

torch::Tensor BranchRunner::slice(const torch::Tensor& t, size_t input, int stage, int microbatch) const {
  const torch::Device device = binding(stage).device;
  if (model_.ir.value(model_.ir.inputs()[input]).shared) return t.to(device);
  const int64_t size = plan_.microbatch_size();
  return t.narrow(0, static_cast<int64_t>(microbatch) * size, size).to(device);
}

bool BranchRunner::run(int stage, int worker, const Executor& executor, double& loss) {
  std::optional<torch::NoGradGuard> no_grad;
  if (!training_) no_grad.emplace();
  try {
    if (scope_.transport != nullptr) scope_.transport->begin_step(step_);
    std::vector<MicrobatchState> states(static_cast<size_t>(plan_.microbatches));
    for (int m = 0; m < plan_.microbatches; ++m)
      forward(stage, worker, executor, m, states[static_cast<size_t>(m)]);
    for (int m = 0; training_ && m < plan_.microbatches; ++m) {
      backward(stage, worker, m, states[static_cast<size_t>(m)], loss);
    }
    if (scope_.transport != nullptr) scope_.transport->finish_step();
  } catch (const Aborted&) {
    return false;
  }
  return true;
}

void BranchRunner::forward(int stage, int worker, const Executor& executor, int microbatch,
                           MicrobatchState& state) {
  const Graph& g = model_.ir;
  const StagePlan& sp = stages_[static_cast<size_t>(stage)];
  const DeviceBinding& binding = this->binding(stage);
  const size_t slot_base = static_cast<size_t>(microbatch) * transfers_.size();
  auto where = [&] { return "stage " + std::to_string(stage) + " on " + binding.id + ": "; };
  std::vector<c10::IValue> inputs;
  for (size_t i = 0; i < batch_->inputs.size(); ++i)
    inputs.emplace_back(slice(batch_->inputs[i], i, stage, microbatch));
  Executor::Environment env = executor.make_environment(inputs);
  state.segments.assign(sp.segments.size(), {});
  for (size_t i = 0; i < sp.segments.size(); ++i) {
    const Segment& seg = sp.segments[i];
    SegmentState& ss = state.segments[i];
    for (int k : seg.receive) {
      const Transfer& tr = transfers_[static_cast<size_t>(k)];
      if (remote(tr.from)) {
        // From another process, on the host: every floating-point tensor becomes a leaf (the sender does not
        // say which carry history), and the gradients go back one per tensor of the value.
        std::vector<torch::Tensor> leaves;
        c10::IValue iv = map_tensors(scope_.transport->receive(message(k, microbatch, false), 1).at(0),
                                     [&](const torch::Tensor& x) -> c10::IValue {
                                       torch::Tensor y = x.to(binding.device);
                                       if (!training_ || !y.is_floating_point()) {
                                         leaves.emplace_back();
                                         return y;
                                       }
                                       torch::Tensor leaf = y.detach().requires_grad_();
                                       leaves.push_back(leaf);
                                       return tr.clone ? leaf.clone() : leaf;
                                     });
        if (training_) ss.received.emplace_back(k, std::move(leaves));
        env[static_cast<size_t>(tr.value)] = std::move(iv);
        continue;
      }
      c10::IValue iv = values_.take(slot_base + static_cast<size_t>(k));
      if (training_) {
        std::vector<torch::Tensor> leaves;
        iv = leafify(iv, tr.clone, leaves);
        ss.received.emplace_back(k, std::move(leaves));
      }
      env[static_cast<size_t>(tr.value)] = std::move(iv);
    }
    if (training_) {
      for (const auto& [v, producer_segment] : seg.detach) {
        // Produced by an earlier segment of this stage: its backward seeds the original with the leaves'
        // gradients once every later segment that reads the leaves has run its backward.
        std::vector<torch::Tensor> leaves;
        c10::IValue& slot = env[static_cast<size_t>(v)];
        std::vector<torch::Tensor> originals = grad_tensors(slot);
        if (originals.empty()) continue;
        slot = leafify(slot, mutated_[static_cast<size_t>(v)], leaves);
        state.segments[static_cast<size_t>(producer_segment)].kept.emplace_back(std::move(originals),
                                                                                std::move(leaves));
      }
    }
    TaskEvent e{EngineTaskKind::kForward, stage, worker, binding.id, microbatch, step_, {}, {}};
    notify_task(observers_, e, true);
    for (size_t k = seg.begin; k < seg.end; ++k) {
      const NodeId id = sp.nodes[k];
      const Node& node = g.node(id);
      std::vector<c10::IValue> args;
      args.reserve(node.inputs.size());
      for (ValueId v : node.inputs) args.push_back(env[static_cast<size_t>(v)]);
      std::vector<c10::IValue> outs;
      try {
        outs = executor.run_node(id, std::move(args));
      } catch (const Error& err) {
        throw Error(where() + err.what());
      }
      for (size_t o = 0; o < node.outputs.size() && o < outs.size(); ++o)
        env[static_cast<size_t>(node.outputs[o])] = std::move(outs[o]);
      for (int t : sp.send_after[k]) {
        const Transfer& tr = transfers_[static_cast<size_t>(t)];
        if (remote(tr.to)) {  // the message is a copy: no clone needed for a value written later
          const c10::IValue value = crossing(env[static_cast<size_t>(tr.value)]);
          scope_.transport->send({value}, message(t, microbatch, false));
          if (training_) ss.sent.emplace_back(t, flatten_tensors(value));
          continue;
        }
        const torch::Device dest = this->binding(tr.to).device;
        c10::IValue iv =
            map_tensors(env[static_cast<size_t>(tr.value)], [&](const torch::Tensor& x) -> c10::IValue {
              if (!x.defined()) return x;
              torch::Tensor y = tr.clone ? x.clone() : x;
              return y.device() == dest ? y : y.to(dest);
            });
        if (training_) ss.sent.emplace_back(t, grad_tensors(iv));
        values_.put(slot_base + static_cast<size_t>(t), std::move(iv));
      }
      if (static_cast<int>(k) == sp.loss_position) {
        try {
          const auto outs0 = flatten_tensors(env[static_cast<size_t>(g.outputs()[0])]);
          PARTITA_CHECK(!outs0.empty() && outs0[0].is_floating_point(),
                        "training needs a floating-point model output");
          ss.loss = slice_loss(loss_kind_, outs0[0],
                               slice_targets(batch_->targets, plan_.global_batch,
                                             static_cast<int64_t>(microbatch) * plan_.microbatch_size(),
                                             plan_.microbatch_size())
                                   .to(binding.device),
                               plan_.global_batch);
        } catch (const Error& err) {
          throw Error(where() + err.what());
        }
      }
      for (ValueId v : sp.release_after[k]) env[static_cast<size_t>(v)] = c10::IValue();
    }
    notify_task(observers_, e, false);
  }
  if (!training_) {
    for (int o : sp.outputs) {
      outputs_[static_cast<size_t>(microbatch)][static_cast<size_t>(o)] =
          flatten_tensors(env[static_cast<size_t>(g.outputs()[static_cast<size_t>(o)])]);
    }
  }
}

void BranchRunner::backward(int stage, int worker, int microbatch, MicrobatchState& state, double& loss) {
  const StagePlan& sp = stages_[static_cast<size_t>(stage)];
  const DeviceBinding& binding = this->binding(stage);
  const size_t slot_base = static_cast<size_t>(microbatch) * transfers_.size();
  for (size_t i = sp.segments.size(); i-- > 0;) {
    SegmentState& ss = state.segments[i];
    std::vector<torch::Tensor> roots, grads;
    for (const auto& [t, sent] : ss.sent) {
      std::vector<torch::Tensor> back;
      if (remote(transfers_[static_cast<size_t>(t)].to)) {
        for (const c10::IValue& g : scope_.transport->receive(message(t, microbatch, true), sent.size()))
          back.push_back(g.isTensor() ? g.toTensor() : torch::Tensor());
      } else {
        back = gradients_.take(slot_base + static_cast<size_t>(t));
      }
      PARTITA_ASSERT(back.size() == sent.size(), "transfer ", t, ": ", back.size(), " gradients for ",
                     sent.size(), " tensors");
      for (size_t e = 0; e < sent.size(); ++e) {
        // A tensor sent to another process may carry no history (that side cannot tell).
        if (!back[e].defined() || !needs_grad(sent[e])) continue;
        roots.push_back(sent[e]);
        grads.push_back(back[e].device() == sent[e].device() ? back[e] : back[e].to(sent[e].device()));
      }
    }
    for (const auto& [originals, leaves] : ss.kept) {
      for (size_t e = 0; e < originals.size(); ++e) {
        if (!leaves[e].grad().defined()) continue;
        roots.push_back(originals[e]);
        grads.push_back(leaves[e].grad());
      }
    }
    if (ss.loss.defined()) {
      loss += ss.loss.item<double>();
      roots.push_back(ss.loss);
      grads.push_back(torch::ones_like(ss.loss));
    }
    // backward_from holds the only references to the roots (the kept leaves share their originals' storage).
    ss.sent.clear();
    ss.kept.clear();
    ss.loss = torch::Tensor();
    TaskEvent e{EngineTaskKind::kBackward, stage, worker, binding.id, microbatch, step_, {}, {}};
    notify_task(observers_, e, true);
    if (!roots.empty()) {
      try {
        backward_from(roots, std::move(grads));
      } catch (const std::exception& err) {
        throw Error("stage " + std::to_string(stage) + " on " + binding.id + ": backward of nodes " +
                    std::to_string(sp.nodes[sp.segments[i].begin]) + ".." +
                    std::to_string(sp.nodes[sp.segments[i].end - 1]) + " failed: " + first_line(err));
      }
    }
    notify_task(observers_, e, false);
    for (const auto& [t, leaves] : ss.received) {
      std::vector<torch::Tensor> back;
      back.reserve(leaves.size());
      for (const auto& leaf : leaves) back.push_back(leaf.defined() ? leaf.grad() : torch::Tensor());
      if (remote(transfers_[static_cast<size_t>(t)].from)) {
        scope_.transport->send(std::vector<c10::IValue>(back.begin(), back.end()),
                               message(t, microbatch, true));
      } else {
        gradients_.put(slot_base + static_cast<size_t>(t), std::move(back));
      }
    }
    ss = SegmentState{};
  }
}

std::vector<torch::Tensor> BranchRunner::take_outputs() {
  std::vector<std::vector<torch::Tensor>> pieces;
  for (const auto& per_output : outputs_) {
    std::vector<torch::Tensor> flat;
    for (const auto& tensors : per_output) flat.insert(flat.end(), tensors.begin(), tensors.end());
    if (pieces.empty()) pieces.resize(flat.size());
    for (size_t i = 0; i < flat.size() && i < pieces.size(); ++i)
      pieces[i].push_back(flat[i].to(torch::kCPU));
  }
  std::vector<torch::Tensor> out;
  // One piece is the output itself: a 0-d output (a plan that keeps the batch whole) cannot be concatenated.
  for (auto& p : pieces) out.push_back(p.size() == 1 ? p.front() : torch::cat(p, 0));
  for (auto& per_output : outputs_) per_output.assign(per_output.size(), {});
  return out;
}

}  // namespace partita::detail

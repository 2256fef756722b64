#include "partita/search/stage_model.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <span>

#include "partita/core/error.h"
#include "partita/cost/loss.h"
#include "partita/cost/memory.h"
#include "partita/graph/analysis.h"
#include "range_max.h"

namespace partita {

namespace {

bool is_weight_or_constant(const Value& v) {
  return v.role == ValueRole::kParameter || v.role == ValueRole::kBuffer || v.role == ValueRole::kConstant;
}

int infer_graph_batch(const Graph& graph, const SearchOptions& options) {
  if (options.graph_batch > 0) return options.graph_batch;
  for (ValueId id : graph.inputs()) {
    const TensorMeta* m = graph.value(id).meta();
    if (m && !graph.value(id).shared && !m->shape.empty() && m->shape[0] > 0)
      return static_cast<int>(m->shape[0]);
  }
  return 1;
}

// [i] for i in 0..n-1: the sum of diff[0..i].
std::vector<SampleBytes> running_sum(const std::vector<SampleBytes>& diff, int n) {
  std::vector<SampleBytes> out(static_cast<size_t>(n));
  SampleBytes run;
  for (size_t i = 0; i < out.size(); ++i) out[i] = (run = run + diff[i]);
  return out;
}

RangeLineMax lines_of(const std::vector<SampleBytes>& bytes) {
  std::vector<double> slope, intercept;
  for (const SampleBytes& b : bytes) {
    slope.push_back(b.per_sample);
    intercept.push_back(b.fixed);
  }
  return RangeLineMax(slope, intercept);
}

}  // namespace

StageModel::StageModel(const Graph& graph, const Cluster& cluster, const CostTable& table,
                       const SearchOptions& options)
    : graph_(&graph), cluster_(&cluster), options_(options) {
  options_.validate();
  graph_batch_ = infer_graph_batch(graph, options);
  const int n = graph.num_nodes();
  PARTITA_CHECK(n > 0, "cannot plan an empty graph");
  const double per = 1.0 / graph_batch_;
  for (const auto& d : cluster.devices) {
    const auto it = std::find(table.spec_names.begin(), table.spec_names.end(), d.spec.name);
    PARTITA_CHECK(it != table.spec_names.end(), "the cost table has no row for device ", d.id, " ('",
                  d.spec.name, "'); build it with every spec of the cluster");
    device_spec_.push_back(static_cast<int>(it - table.spec_names.begin()));
  }
  PARTITA_CHECK(table.times.size() == table.spec_names.size(), "cost table has ", table.times.size(),
                " rows for ", table.spec_names.size(), " spec names");
  // A node computed from weights, constants and shared inputs alone (softmax(w), a merged low-rank update
  // W + A @ B, ~mask) runs whole in every replica and microbatch however few its samples: all of its time
  // is fixed.
  const std::vector<bool> dep = batch_dependent(graph);
  std::vector<bool> batch_free(static_cast<size_t>(n), false);
  for (int i = 0; i < n; ++i) {
    const auto& outs = graph.node(i).outputs;
    batch_free[static_cast<size_t>(i)] =
        !outs.empty() && std::none_of(outs.begin(), outs.end(), [&](ValueId v) { return dep[v]; });
  }
  for (const auto& row : table.times) {
    PARTITA_CHECK(static_cast<int>(row.size()) == n, "cost table row has ", row.size(),
                  " nodes; the graph has ", n);
    std::vector<double> f(static_cast<size_t>(n) + 1, 0.0), b(f), ff(f), bf(f);
    for (int i = 0; i < n; ++i) {
      const NodeTimes& t = row[i];
      const bool whole = batch_free[static_cast<size_t>(i)];
      const double fixed_f =
          whole ? t.forward.value() : std::clamp(t.forward_fixed.value(), 0.0, t.forward.value());
      const double fixed_b =
          whole ? t.backward.value() : std::clamp(t.backward_fixed.value(), 0.0, t.backward.value());
      f[i + 1] = f[i] + (t.forward.value() - fixed_f) * per;
      b[i + 1] = b[i] + (t.backward.value() - fixed_b) * per;
      ff[i + 1] = ff[i] + fixed_f;
      bf[i + 1] = bf[i] + fixed_b;
    }
    fwd_prefix_.push_back(std::move(f));
    bwd_prefix_.push_back(std::move(b));
    fwd_fixed_prefix_.push_back(std::move(ff));
    bwd_fixed_prefix_.push_back(std::move(bf));
  }
  // Parameters at their first reader; saved storages at their producer; boundaries by a difference array.
  // A storage's bytes grow with the samples when it depends on the batch, else every run holds it whole.
  const auto bytes_of = [&](ValueId id) {
    const double b = static_cast<double>(graph.value(id).bytes().value());
    return dep[static_cast<size_t>(id)] ? SampleBytes{b * per, 0.0} : SampleBytes{0.0, b};
  };
  const SavedByProducer saved = saved_activations_by_producer(graph);
  param_prefix_.assign(static_cast<size_t>(n) + 1, 0.0);
  trainable_prefix_.assign(static_cast<size_t>(n) + 1, 0.0);
  saved_prefix_.assign(static_cast<size_t>(n) + 1, SampleBytes{});
  std::vector<SampleBytes> diff(static_cast<size_t>(n) + 1);
  workspace_.assign(static_cast<size_t>(n), SampleBytes{});
  std::vector<std::vector<NodeId>> readers(static_cast<size_t>(graph.num_values()));
  // Trainable bytes node i reads whose gradients its backward makes as new tensors (not views of its
  // output's gradient, which the workspace counts already: an add of a weight of the output's shape, a view).
  std::vector<double> afresh(static_cast<size_t>(n), 0.0);
  for (int i = 0; i < n; ++i) {
    const Node& node = graph.node(i);
    const bool views = backward_makes_views(graph, node);
    double p = 0, t = 0;
    SampleBytes io;
    for (ValueId id : node.inputs) {
      const Value& v = graph.value(id);
      if (v.role == ValueRole::kParameter || v.role == ValueRole::kBuffer) {
        std::vector<NodeId>& r = readers[static_cast<size_t>(id)];
        if (r.empty()) {
          p += static_cast<double>(v.bytes().value());
          if (v.role == ValueRole::kParameter) t += static_cast<double>(v.bytes().value());
        }
        if ((r.empty() || r.back() != i) && v.role == ValueRole::kParameter && !views)
          afresh[static_cast<size_t>(i)] += static_cast<double>(v.bytes().value());
        if (r.empty() || r.back() != i) r.push_back(i);
      } else if (!is_weight_or_constant(v) && saved.requires_grad[static_cast<size_t>(id)]) {
        io = io + bytes_of(id);
      }
    }
    SampleBytes out;  // the output's gradient, when it has one
    for (ValueId id : node.outputs) {
      if (saved.requires_grad[static_cast<size_t>(id)]) out = out + bytes_of(id);
    }
    param_prefix_[i + 1] = param_prefix_[i] + p;
    trainable_prefix_[i + 1] = trainable_prefix_[i] + t;
    const double whole = static_cast<double>(saved.batch_free[static_cast<size_t>(i)].value());
    saved_prefix_[i + 1] =
        saved_prefix_[i] +
        SampleBytes{(static_cast<double>(saved.bytes[static_cast<size_t>(i)].value()) - whole) * per, whole};
    // Backward's gradients in flight at the node: its output's and its inputs' (unless views of the former);
    // none for a user input or an integer tensor (a first convolution's input was counted as a gradient
    // its backward never makes: one input's size too many at a one-layer model's peak).
    workspace_[static_cast<size_t>(i)] = (views ? SampleBytes{} : io) + out;
    for (ValueId id : node.outputs) {
      const Value& v = graph.value(id);
      int last_user = i;
      for (NodeId u : v.users) last_user = std::max(last_user, static_cast<int>(u));
      if (last_user > i) {
        diff[static_cast<size_t>(i)] = diff[static_cast<size_t>(i)] + bytes_of(id);
        diff[static_cast<size_t>(last_user)] = diff[static_cast<size_t>(last_user)] - bytes_of(id);
      }
    }
  }
  if (training()) {
    // The gradients a range ending at node c gets back: its values read after c that get one, by producer.
    // A value is listed at every cut it crosses (a mask every layer reads: at each of them).
    returned_.assign(static_cast<size_t>(n), {});
    for (int i = 0; i < n; ++i) {
      for (ValueId id : graph.node(i).outputs) {
        const Value& v = graph.value(id);
        if (!saved.requires_grad[static_cast<size_t>(id)] || v.users.empty()) continue;
        const auto [first_reader, last_reader] = std::minmax_element(v.users.begin(), v.users.end());
        for (NodeId c = i; c < *last_reader; ++c) {
          std::vector<ReturnedGradient>& at = returned_[static_cast<size_t>(c)];
          if (at.empty() || at.back().producer != i) at.push_back(ReturnedGradient{i, {}, {}});
          at.back().sent = at.back().sent + bytes_of(id);
          if (*first_reader > c) at.back().at_producer = at.back().at_producer + bytes_of(id);
        }
      }
    }
  }
  spanning_.assign(static_cast<size_t>(n) + 1, {});
  std::vector<double> unshared_trainable(static_cast<size_t>(n), 0.0);
  for (size_t id = 0; id < readers.size(); ++id) {
    const Value& v = graph.value(static_cast<ValueId>(id));
    if (readers[id].size() == 1 && v.role == ValueRole::kParameter)
      unshared_trainable[static_cast<size_t>(readers[id].front())] += static_cast<double>(v.bytes().value());
    if (readers[id].size() < 2) continue;
    const int k = static_cast<int>(shared_.size());
    shared_.push_back(SharedWeight{static_cast<double>(v.bytes().value()), v.role == ValueRole::kParameter,
                                   std::move(readers[id])});
    const auto& r = shared_.back().readers;
    for (NodeId i = r.front() + 1; i <= r.back(); ++i) spanning_[static_cast<size_t>(i)].push_back(k);
  }
  boundary_ = running_sum(diff, n);
  boundary_[static_cast<size_t>(n) - 1] = SampleBytes{};
  for (ValueId id : graph.inputs()) {
    graph_input_ = graph_input_ + bytes_of(id);
    if (graph.value(id).shared) shared_inputs_ += static_cast<double>(graph.value(id).bytes().value());
  }
  // The loss `partita run` computes (SearchOptions::loss) from the first output: what it keeps and its
  // targets (MSE's are a float32 copy of the output's shape); what it keeps is gone once its backward ran,
  // and that backward holds two tensors of the first output's size beyond it (see loss_backward_moment).
  if (training()) {
    const double step = static_cast<double>(loss_step_bytes(graph, options_.loss).value());
    const double targets = static_cast<double>(loss_target_bytes(graph, options_.loss).value());
    const double backward = static_cast<double>(loss_backward_bytes(graph, options_.loss).value());
    loss_per_sample_ = step * per;
    loss_kept_per_sample_ = (step - targets) * per;
    // loss_backward_bytes counts the first output beside the loss's backward; the engine has dropped it
    // (activation() leaves it out), and the backward's second gradient stands in its place.
    loss_backward_per_sample_ = 2.0 * (backward - step) * per;
  }
  // Backward reaches node i after freeing what the later nodes saved: its working set, less those ...
  std::vector<SampleBytes> later(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    later[static_cast<size_t>(i)] = workspace_[static_cast<size_t>(i)] + saved_prefix_[i + 1];
  // ... and at the first backward of a step the gradients of the weights only nodes before it read are not
  // made yet.
  unshared_trainable_prefix_.assign(static_cast<size_t>(n) + 1, 0.0);
  std::vector<SampleBytes> first_backward(later);
  for (int i = 0; i < n; ++i) {
    first_backward[static_cast<size_t>(i)].fixed -= unshared_trainable_prefix_[static_cast<size_t>(i)];
    unshared_trainable_prefix_[static_cast<size_t>(i) + 1] =
        unshared_trainable_prefix_[static_cast<size_t>(i)] + unshared_trainable[static_cast<size_t>(i)];
  }
  // ... and at a later one, where every gradient exists, the node makes its weights' afresh, to be added in.
  std::vector<SampleBytes> later_afresh(later);
  for (int i = 0; i < n; ++i) later_afresh[static_cast<size_t>(i)].fixed += afresh[static_cast<size_t>(i)];
  workspace_lines_ = lines_of(workspace_);
  later_backward_ = lines_of(later);
  first_backward_ = lines_of(first_backward);
  later_afresh_ = lines_of(later_afresh);
  later_afresh_at_ = std::move(later_afresh);
  first_backward_at_ = std::move(first_backward);

  // Storage lifetimes (views and in-place results extend their root's), as the inference peak uses them.
  const size_t nv = static_cast<size_t>(graph.num_values());
  const StorageLifetimes life = storage_lifetimes(graph, saved.root);
  const std::vector<int>&born = life.born, &dies = life.dies;
  // Unsaved storages alive across node i's end (produced at or before i, read after it): a range ending at i
  // keeps them as results. Graph inputs are the first range's inputs, counted there. Saved storages
  // produced at or before node i and alive after it: a stage ending at i keeps them as results (sent on, or
  // saved again by a later stage), so activation offload frees nothing by moving them.
  std::vector<SampleBytes> unsaved_diff(static_cast<size_t>(n) + 1), saved_diff(unsaved_diff);
  for (size_t r = 0; r < nv; ++r) {
    const Value& root = graph.value(static_cast<ValueId>(r));
    if (born[r] < 0 || root.producer == kNoNode) continue;
    const int end = std::max(dies[r], born[r]);  // alive while its producer runs, even unread
    if (end <= born[r]) continue;
    std::vector<SampleBytes>& d = saved.saved[r] ? saved_diff : unsaved_diff;
    const SampleBytes b = bytes_of(static_cast<ValueId>(r));
    d[static_cast<size_t>(born[r])] = d[static_cast<size_t>(born[r])] + b;
    d[static_cast<size_t>(end)] = d[static_cast<size_t>(end)] - b;
  }
  saved_cross_ = running_sum(saved_diff, n);
  unsaved_cross_ = running_sum(unsaved_diff, n);
  // Alive while node i runs: the storages that depend on the batch, and those held whole.
  std::vector<double> grows(nv, 0.0), held_whole(nv, 0.0);
  for (size_t v = 0; v < nv; ++v) (dep[v] ? grows : held_whole)[v] = 1.0;
  const std::vector<double> live_grows = live_bytes_per_node(graph, saved.root, grows);
  const std::vector<double> live_whole = live_bytes_per_node(graph, saved.root, held_whole);
  live_.resize(static_cast<size_t>(n));
  for (size_t i = 0; i < live_.size(); ++i) live_[i] = SampleBytes{live_grows[i] * per, live_whole[i]};
  live_lines_ = lines_of(live_);
  scratch_ = kernel_scratch(graph);
  if (training()) {
    // What a training forward holds at node i: the saved prefix, and the unsaved storages from their
    // producer through their last reader (through the end for graph outputs).
    std::vector<SampleBytes> alive_diff(static_cast<size_t>(n) + 1);
    for (size_t r = 0; r < nv; ++r) {
      const Value& root = graph.value(static_cast<ValueId>(r));
      if (born[r] < 0 || saved.saved[r] || root.producer == kNoNode) continue;
      const SampleBytes b = bytes_of(static_cast<ValueId>(r));
      const size_t end = static_cast<size_t>(std::min(std::max(dies[r], born[r]), n - 1)) + 1;
      alive_diff[static_cast<size_t>(born[r])] = alive_diff[static_cast<size_t>(born[r])] + b;
      alive_diff[end] = alive_diff[end] - b;
    }
    forward_ = running_sum(alive_diff, n);
    for (int i = 0; i < n; ++i)
      forward_[static_cast<size_t>(i)] = forward_[static_cast<size_t>(i)] + saved_prefix_[i + 1];
    forward_lines_ = lines_of(forward_);
  }
}

StageModel StageModel::over_links_of(const Cluster& cluster) const {
  PARTITA_CHECK(cluster.devices.size() == cluster_->devices.size(), "stage model of cluster '",
                cluster_->name, "' over the links of cluster '", cluster.name, "': ", cluster.devices.size(),
                " devices instead of ", cluster_->devices.size());
  for (size_t i = 0; i < cluster.devices.size(); ++i) {
    const ClusterDevice& a = cluster_->devices[i];
    const ClusterDevice& b = cluster.devices[i];
    PARTITA_CHECK(a.id == b.id && a.spec.name == b.spec.name, "stage model of cluster '", cluster_->name,
                  "' over the links of cluster '", cluster.name, "': device ", i, " is ", b.id, " (",
                  b.spec.name, ") instead of ", a.id, " (", a.spec.name, ")");
  }
  StageModel out = *this;
  out.cluster_ = &cluster;
  return out;
}

int StageModel::device_index(const std::string& id) const {
  const int i = cluster_->index_of(id);
  PARTITA_CHECK(i >= 0, "cluster '", cluster_->name, "' has no device '", id, "'");
  return i;
}

Bytes StageModel::memory_cap(int device) const {
  const Bytes own = cluster_->devices[static_cast<size_t>(device)].spec.memory;
  const bool use_own = own.value() > 0 && options_.memory_cap == MemoryCap::kDeviceAndLimit;
  Bytes cap = use_own ? own : Bytes(std::numeric_limits<int64_t>::max());
  if (options_.memory_limit) cap = std::min(cap, *options_.memory_limit);
  return cap;
}

namespace {
double range_of(const std::vector<std::vector<double>>& prefix, int spec, NodeId first, NodeId last) {
  const auto& p = prefix[static_cast<size_t>(spec)];
  return p[static_cast<size_t>(last) + 1] - p[static_cast<size_t>(first)];
}
}  // namespace

Seconds StageModel::forward_per_sample(int spec, NodeId first, NodeId last) const {
  return Seconds(range_of(fwd_prefix_, spec, first, last));
}
Seconds StageModel::backward_per_sample(int spec, NodeId first, NodeId last) const {
  return Seconds(range_of(bwd_prefix_, spec, first, last));
}
Seconds StageModel::forward_fixed(int spec, NodeId first, NodeId last) const {
  return Seconds(range_of(fwd_fixed_prefix_, spec, first, last));
}
Seconds StageModel::backward_fixed(int spec, NodeId first, NodeId last) const {
  return Seconds(range_of(bwd_fixed_prefix_, spec, first, last));
}

Seconds StageModel::forward(int spec, NodeId first, NodeId last, double samples) const {
  return forward_fixed(spec, first, last) + forward_per_sample(spec, first, last) * samples;
}

Seconds StageModel::backward(int spec, NodeId first, NodeId last, double samples) const {
  return backward_fixed(spec, first, last) + backward_per_sample(spec, first, last) * samples;
}

Seconds StageModel::microbatch_time(int spec, const StageLoad& load) const {
  const Seconds f = forward(spec, load.first, load.last, load.samples);
  if (!training()) return f;
  const Seconds b = backward(spec, load.first, load.last, load.samples);
  const Seconds t = activation_transfer(load);
  return (load.checkpointing == Checkpointing::kFull ? f + f + b : f + b) + t + t;
}

Seconds StageModel::activation_transfer(const StageLoad& load) const {
  if (!training() || !offloads_activations(load.offload)) return Seconds(0);
  // In double, not whole Bytes: per-sample costs (data parallel's shares) must scale exactly.
  return Seconds(offloaded(load.first, load.last).at(load.samples) / options_.host_bandwidth.value());
}

bool StageModel::can_offload(int device) const {
  return cluster_->devices[static_cast<size_t>(device)].spec.kind != DeviceKind::kCpu;
}

std::vector<Savings> StageModel::savings_choices(const std::vector<int>& devices) const {
  if (!training()) return {Savings{}};
  const bool offload = std::all_of(devices.begin(), devices.end(), [&](int d) { return can_offload(d); });
  std::vector<Savings> out;
  for (Checkpointing c : {Checkpointing::kNone, Checkpointing::kFull}) {
    for (Offload o : {Offload::kNone, Offload::kOptimizerState, Offload::kActivations,
                      Offload::kActivationsAndOptimizerState}) {
      if (o != Offload::kNone && !offload) continue;
      // Checkpointing saves only the stage input, which stays on the device: nothing left to offload.
      if (c == Checkpointing::kFull && offloads_activations(o)) continue;
      out.push_back(Savings{c, o});
    }
  }
  return out;
}

Seconds StageModel::sample_time(int spec) const {
  const double b = graph_batch_;
  const Seconds f = forward(spec, 0, num_nodes() - 1, b) / b;
  return training() ? f + backward(spec, 0, num_nodes() - 1, b) / b : f;
}

Bytes StageModel::parameter_bytes(NodeId first, NodeId last) const {
  return Bytes(static_cast<int64_t>(param_prefix_[last + 1] - param_prefix_[first]));
}

Bytes StageModel::trainable_bytes(NodeId first, NodeId last) const {
  return Bytes(static_cast<int64_t>(trainable_prefix_[last + 1] - trainable_prefix_[first]));
}

SampleBytes StageModel::boundary(NodeId after) const { return boundary_[static_cast<size_t>(after)]; }

Bytes StageModel::boundary_bytes(NodeId after, int samples) const {
  return Bytes(static_cast<int64_t>(boundary(after).at(samples)));
}

SampleBytes StageModel::input(NodeId first) const {
  return first == 0 ? graph_input_ : boundary_[static_cast<size_t>(first - 1)];
}

double StageModel::shared_input_once(NodeId first, int device) const {
  return first == 0 && device >= 0 && !can_offload(device) ? shared_inputs_ : 0.0;
}

SampleBytes StageModel::activation(NodeId first, NodeId last) const {
  if (!ends_training(last))
    return input(first) + saved(first, last) + unsaved_cross_[static_cast<size_t>(last)];
  // The last stage of a training step keeps no graph output that no node saved: the engine computes the loss
  // from the outputs and drops them; the loss keeps what it needs (loss_per_sample).
  return input(first) + saved(first, last) + SampleBytes{loss_per_sample_, 0.0};
}

SampleBytes StageModel::dropped_outputs(NodeId last) const {
  return ends_training(last) ? unsaved_cross_[static_cast<size_t>(last)] : SampleBytes{};
}

bool StageModel::ends_training(NodeId last) const { return training() && last == graph_->num_nodes() - 1; }

double StageModel::loss_freed(NodeId last, double samples) const {
  return ends_training(last) ? loss_kept_per_sample_ * samples : 0.0;
}

double StageModel::loss_backward_moment(NodeId last, double samples) const {
  return ends_training(last) ? loss_backward_per_sample_ * samples : 0.0;
}

SampleBytes StageModel::saved(NodeId first, NodeId last) const {
  return saved_prefix_[static_cast<size_t>(last) + 1] - saved_prefix_[static_cast<size_t>(first)];
}

SampleBytes StageModel::offloaded(NodeId first, NodeId last) const {
  const SampleBytes freed = saved(first, last) - saved_cross_[static_cast<size_t>(last)];
  return SampleBytes{std::max(0.0, freed.per_sample), std::max(0.0, freed.fixed)};
}

SampleBytes StageModel::workspace(NodeId node) const { return workspace_[static_cast<size_t>(node)]; }

double StageModel::most_workspace(NodeId first, NodeId last, double samples) const {
  return workspace_lines_.max_at(first, last, samples).value;
}

double StageModel::backward_workspace(NodeId first, NodeId last, double samples) const {
  return later_backward_.max_at(first, last, samples).value -
         saved_prefix_[static_cast<size_t>(last) + 1].at(samples);
}

double StageModel::live_peak(NodeId first, NodeId last, double samples) const {
  // A later stage holds what enters it, which the whole-graph lifetimes may count from an earlier node on.
  return std::max(live_lines_.max_at(first, last, samples).value, input(first).at(samples));
}

KernelSite StageModel::kernel_site(int device) const {
  if (device < 0) return KernelSite{};
  const DeviceSpec& spec = cluster_->devices[static_cast<size_t>(device)].spec;
  return KernelSite{spec.kind == DeviceKind::kCpu, std::max(1, spec.cores)};
}

double StageModel::peak_live(NodeId first, NodeId last, int samples, int device) const {
  const auto alive = [&](NodeId n) { return live_[static_cast<size_t>(n)].at(samples); };
  return std::max(
      live_peak(first, last, samples),
      detail::kernel_peak(scratch_, first, last, samples, graph_batch_, kernel_site(device), alive));
}

Bytes StageModel::read_parameter_bytes(NodeId first, NodeId last) const {
  // Counted at their first reader, plus the weights first read before `first` that a node in range reads.
  double extra = 0;
  for (int k : spanning_[static_cast<size_t>(first)]) {
    const auto& r = shared_[static_cast<size_t>(k)].readers;
    if (*std::lower_bound(r.begin(), r.end(), first) <= last) extra += shared_[static_cast<size_t>(k)].bytes;
  }
  return parameter_bytes(first, last) + Bytes(static_cast<int64_t>(extra));
}

Bytes StageModel::read_trainable_bytes(NodeId first, NodeId last) const {
  double extra = 0;
  for (int k : spanning_[static_cast<size_t>(first)]) {
    const SharedWeight& w = shared_[static_cast<size_t>(k)];
    if (w.trainable && *std::lower_bound(w.readers.begin(), w.readers.end(), first) <= last) extra += w.bytes;
  }
  return trainable_bytes(first, last) + Bytes(static_cast<int64_t>(extra));
}

Bytes StageModel::owned_trainable_bytes(NodeId first, NodeId last) const {
  // First read in range, less those also read after it (those read before it are not first read in it).
  double shared = 0;
  for (int k : spanning_[static_cast<size_t>(last) + 1]) {
    const SharedWeight& w = shared_[static_cast<size_t>(k)];
    if (w.trainable && w.readers.front() >= first) shared += w.bytes;
  }
  return trainable_bytes(first, last) - Bytes(static_cast<int64_t>(shared));
}

WeightHome StageModel::weight_home(int device, int stage_devices) const {
  if (!can_offload(device)) return WeightHome::kHost;
  return stage_devices == 1 ? WeightHome::kOwn : WeightHome::kCopies;
}

Bytes StageModel::gradient_bytes(const StageLoad& load) const {
  return load.weights == WeightHome::kHost ? trainable_bytes(load.first, load.last)
                                           : read_trainable_bytes(load.first, load.last);
}

Bytes StageModel::model_state(const StageLoad& load) const {
  const bool host = load.weights == WeightHome::kHost;
  Bytes state = host ? parameter_bytes(load.first, load.last) : read_parameter_bytes(load.first, load.last);
  if (!training()) return state;
  state = state + gradient_bytes(load);
  if (offloads_optimizer_state(load.offload)) return state;
  switch (load.weights) {
    case WeightHome::kHost:
      return state + optimizer_state_bytes(trainable_bytes(load.first, load.last), options_.optimizer);
    case WeightHome::kOwn:
      return state + optimizer_state_bytes(owned_trainable_bytes(load.first, load.last), options_.optimizer);
    case WeightHome::kCopies:
      return state;
  }
  return state;
}

std::span<const StageModel::ReturnedGradient> StageModel::returned_gradients(NodeId first,
                                                                             NodeId last) const {
  if (!training() || last + 1 >= graph_->num_nodes()) return {};
  const std::vector<ReturnedGradient>& cut = returned_[static_cast<size_t>(last)];
  const auto from =
      std::lower_bound(cut.begin(), cut.end(), first,
                       [](const ReturnedGradient& r, NodeId node) { return r.producer < node; });
  return {from, cut.end()};
}

StageModel::BackwardPeak StageModel::backward_peak(const StageLoad& load) const {
  return backward_peak(load, load.microbatches == 1);
}

StageModel::BackwardPeak StageModel::backward_peak(const StageLoad& load, bool first_of_step) const {
  if (!training()) return BackwardPeak{};
  const double s = load.samples;
  // A range ending the graph: the loss's backward runs first, beside every node's saved tensors and without
  // this backward's gradients; the nodes' backwards run after it has freed what the loss kept.
  const double freed = loss_freed(load.last, s), at_loss = loss_backward_moment(load.last, s);
  const bool ends = ends_training(load.last);
  const size_t first = static_cast<size_t>(load.first);
  const double base = saved_prefix_[static_cast<size_t>(load.last) + 1].at(s) + freed;
  // The gradients returned to the range (see returned gradients above): beside every node, less what the
  // producer's workspace counts.
  const std::span<const ReturnedGradient> returned = returned_gradients(load.first, load.last);
  double returned_bytes = 0;
  for (const ReturnedGradient& r : returned) returned_bytes += r.sent.at(s);
  const auto counted_at = [&](NodeId node) {
    for (const ReturnedGradient& r : returned) {
      if (r.producer == node) return r.at_producer.at(s);
    }
    return 0.0;
  };
  const auto best_of = [&](const RangeLineMax& lines) {
    return lines.max_at_less(
        load.first, load.last, s, returned, [](const ReturnedGradient& r) { return r.producer; },
        [&](const ReturnedGradient& r) { return r.at_producer.at(s); });
  };
  // A node whose kernel takes working memory in its backward (cost/memory.h's
  // backward_kernel_scratch_bytes) holds it beside its moment of the lines.
  const std::vector<SampleBytes>& at = first_of_step ? first_backward_at_ : later_afresh_at_;
  const auto kernel = [&](NodeId node) { return at[static_cast<size_t>(node)].at(s) - counted_at(node); };
  double kernel_top = -std::numeric_limits<double>::infinity();
  NodeId kernel_node = kNoNode;
  const KernelSite site = kernel_site(load.device);
  auto k = std::lower_bound(scratch_.begin(), scratch_.end(), load.first,
                            [](const KernelScratch& e, NodeId n) { return e.node < n; });
  for (; k != scratch_.end() && k->node <= load.last; ++k) {
    const double scratch = backward_kernel_scratch_bytes(*k, s / graph_batch_, site);
    if (scratch > 0 && kernel(k->node) + scratch > kernel_top) {
      kernel_top = kernel(k->node) + scratch;
      kernel_node = k->node;
    }
  }
  if (!first_of_step) {
    const double nodes = std::max(best_of(later_afresh_).value, kernel_top) + returned_bytes - base;
    return BackwardPeak{ends ? std::max(nodes, at_loss) : nodes};
  }
  RangeLineMax::Best best = best_of(first_backward_);
  if (kernel_node != kNoNode && kernel_top > best.value) best = RangeLineMax::Best{kernel_top, kernel_node};
  const double unmade =
      unshared_trainable_prefix_[static_cast<size_t>(best.index)] - unshared_trainable_prefix_[first];
  const double nodes = best.value + returned_bytes + unshared_trainable_prefix_[first] - base;
  const double none_made =
      unshared_trainable_prefix_[static_cast<size_t>(load.last) + 1] - unshared_trainable_prefix_[first];
  if (ends && at_loss - none_made > nodes)
    return BackwardPeak{at_loss - none_made, Bytes(static_cast<int64_t>(none_made))};
  return BackwardPeak{nodes, Bytes(static_cast<int64_t>(unmade))};
}

namespace {

// Nodes run one after the other, each `time` long holding `bytes`, into at most `moments` moments that split
// their total time evenly (a node joins the moment its start falls in, which holds the most of its nodes).
struct NodeMoment {
  double time;
  double bytes;
};
std::vector<StageModel::Moment> merge_moments(const std::vector<NodeMoment>& nodes, int moments) {
  PARTITA_ASSERT(moments > 0, "at least one moment");
  double total = 0;
  for (const NodeMoment& n : nodes) total += n.time;
  std::vector<StageModel::Moment> out;
  double elapsed = 0;
  int last = -1;  // the moment the last entry of `out` is
  for (const NodeMoment& n : nodes) {
    const double start = total > 0 ? std::min(elapsed / total, 1.0) : 0.0;
    const int moment = std::min(static_cast<int>(start * moments), moments - 1);
    if (moment == last)
      out.back().bytes = std::max(out.back().bytes, n.bytes);
    else
      out.push_back(StageModel::Moment{start, n.bytes});
    last = moment;
    elapsed += n.time;
  }
  return out;
}

}  // namespace

std::vector<StageModel::Moment> StageModel::backward_moments(int spec, const StageLoad& load,
                                                             bool first_of_step, int moments) const {
  if (!training()) return {};
  const double s = load.samples;
  const double base = saved_prefix_[static_cast<size_t>(load.last) + 1].at(s) + loss_freed(load.last, s);
  const std::span<const ReturnedGradient> returned = returned_gradients(load.first, load.last);
  double returned_bytes = 0;
  for (const ReturnedGradient& r : returned) returned_bytes += r.sent.at(s);
  // As backward_peak: each node's entry less what its producer's workspace counts of the returned gradients,
  // with its kernel's working memory; at the first backward, less the gradients not made yet.
  const std::vector<SampleBytes>& at = first_of_step ? first_backward_at_ : later_afresh_at_;
  const double made = first_of_step ? unshared_trainable_prefix_[static_cast<size_t>(load.first)] : 0.0;
  const KernelSite site = kernel_site(load.device);
  std::vector<NodeMoment> nodes;
  if (ends_training(load.last)) {
    const double none_made = first_of_step ? unshared_trainable_prefix_[static_cast<size_t>(load.last) + 1] -
                                                 unshared_trainable_prefix_[static_cast<size_t>(load.first)]
                                           : 0.0;
    nodes.push_back(NodeMoment{0.0, loss_backward_moment(load.last, s) - none_made});
  }
  auto k = std::upper_bound(scratch_.begin(), scratch_.end(), load.last,
                            [](NodeId n, const KernelScratch& e) { return n < e.node; });
  for (NodeId node = load.last; node >= load.first; --node) {
    double bytes = at[static_cast<size_t>(node)].at(s);
    for (const ReturnedGradient& r : returned) {
      if (r.producer == node) bytes -= r.at_producer.at(s);
    }
    double scratch = 0;
    for (; k != scratch_.begin() && std::prev(k)->node >= node; --k)
      scratch = std::max(scratch, backward_kernel_scratch_bytes(*std::prev(k), s / graph_batch_, site));
    nodes.push_back(
        NodeMoment{backward(spec, node, node, s).value(), bytes + scratch + returned_bytes + made - base});
  }
  return merge_moments(nodes, moments);
}

std::vector<StageModel::Moment> StageModel::forward_moments(int spec, const StageLoad& load,
                                                            int moments) const {
  if (!training()) return {};
  const double s = load.samples;
  // As forward_peak.
  const double base = (input(load.first) - saved_prefix_[static_cast<size_t>(load.first)]).at(s);
  const KernelSite site = kernel_site(load.device);
  std::vector<NodeMoment> nodes;
  auto k = std::lower_bound(scratch_.begin(), scratch_.end(), load.first,
                            [](const KernelScratch& e, NodeId n) { return e.node < n; });
  for (NodeId node = load.first; node <= load.last; ++node) {
    const double alive = forward_[static_cast<size_t>(node)].at(s) + base;
    double bytes = alive;
    for (; k != scratch_.end() && k->node == node; ++k)
      bytes = std::max(bytes, alive + training_kernel_scratch_bytes(*k, s / graph_batch_, site));
    nodes.push_back(NodeMoment{forward(spec, node, node, s).value(), bytes});
  }
  return merge_moments(nodes, moments);
}

double StageModel::forward_peak(const StageLoad& load) const {
  if (!training()) return 0.0;
  // What enters the range, less what the nodes before it saved, is there throughout.
  const SampleBytes base = input(load.first) - saved_prefix_[static_cast<size_t>(load.first)];
  const auto alive = [&](NodeId i) { return (forward_[static_cast<size_t>(i)] + base).at(load.samples); };
  return std::max(forward_lines_.max_at(load.first, load.last, load.samples).value + base.at(load.samples),
                  detail::kernel_peak(scratch_, load.first, load.last, load.samples, graph_batch_,
                                      kernel_site(load.device), alive, training_kernel_scratch_bytes));
}

BackwardsInFlight backwards_in_flight(int in_flight, int microbatches) {
  const int first = std::min(in_flight, microbatches);
  // 1F1B's steady state starts a forward between two backwards; once every forward has run (GPipe, or
  // 1F1B with no more microbatches than stages to the end) each backward ends one for good.
  return BackwardsInFlight{first, microbatches > first ? first : first - 1};
}

Bytes StageModel::memory(const StageLoad& load) const {
  const double state = static_cast<double>(model_state(load).value());
  if (!training()) {
    return Bytes(static_cast<int64_t>(state + peak_live(load.first, load.last, load.samples, load.device)));
  }
  const double s = load.samples;
  const double act = activation(load.first, load.last).at(s);
  // Activations on the device while a backward runs with `kept` microbatches in flight (its own included);
  // a shared input the device holds once is counted once.
  const double once = shared_input_once(load.first, load.device);
  const auto activations = [&](int kept) {
    if (load.checkpointing == Checkpointing::kFull) {
      // Inputs kept; one microbatch's activations recomputed at a time.
      return input(load.first).at(s) * kept + act - once * kept;
    }
    if (offloads_activations(load.offload)) {
      // What is not moved stays per microbatch in flight; one microbatch's moved tensors come back at a time.
      const double moved = offloaded(load.first, load.last).at(s);
      return (act - moved) * kept + moved - once * (kept - 1);
    }
    return act * kept - once * (kept - 1);
  };
  // A forward beside `others` microbatches in flight, which keep what activations() counts for them.
  const double gradients = static_cast<double>(gradient_bytes(load).value());
  const double forward = forward_peak(load);
  const auto forward_beside = [&](int others) { return activations(others + 1) - activations(1) + forward; };
  if (load.microbatches < 2) {
    // One microbatch: its forward runs before any gradient exists (microbatches not known: every one does).
    const double before_gradients = load.microbatches == 1 ? gradients : 0.0;
    return Bytes(
        static_cast<int64_t>(state + std::max(activations(load.in_flight) + backward_peak(load).beyond_state,
                                              forward_beside(load.in_flight - 1) - before_gradients)));
  }
  // The device's first backward of the step runs before any gradient exists, with the most microbatches in
  // flight; the later ones beside every gradient, with as many or one fewer. Its first forwards run before
  // any gradient too, the last of them beside the others in flight; with more microbatches than that, the
  // later forwards (1F1B's steady state) beside as many and every gradient.
  const BackwardsInFlight kept = backwards_in_flight(load.in_flight, load.microbatches);
  const double first = activations(kept.first) + backward_peak(load, /*first_of_step=*/true).beyond_state;
  const double later = activations(kept.later) + backward_peak(load, false).beyond_state;
  const double forwards = forward_beside(kept.first - 1) - (load.microbatches > kept.first ? 0.0 : gradients);
  return Bytes(static_cast<int64_t>(state + std::max({first, later, forwards})));
}

Seconds StageModel::offload_time(const StageLoad& load) const {
  if (!training() || !offloads_optimizer_state(load.offload)) return Seconds(0);
  const Bytes state = optimizer_state_bytes(trainable_bytes(load.first, load.last), options_.optimizer);
  return (state + state) / options_.host_bandwidth;
}

}  // namespace partita

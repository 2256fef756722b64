#include "simulate_branch.h"

#include <algorithm>
#include <map>
#include <queue>

#include "host_memory.h"
#include "partita/core/format.h"
#include "partita/cost/comm.h"
#include "partita/cost/energy.h"
#include "partita/cost/memory.h"
#include "partita/search/stage_model.h"
#include "task_graph.h"
#include "update_task.h"

namespace partita::detail {

namespace {

std::string node_label(const char* what, NodeId n, int mb) {
  return std::string(what) + " n" + std::to_string(n) + " mb" + std::to_string(mb);
}

// A global order of the nodes consistent with the data edges and with every stage's list order (Kahn over the
// union of both). Throws partita::Error when the lists contradict the data edges in a cycle (the plan would
// deadlock).
std::vector<NodeId> global_order(const Plan& plan, const Graph& graph) {
  const int n = graph.num_nodes();
  std::vector<std::vector<NodeId>> succ(static_cast<size_t>(n));
  std::vector<int> indeg(static_cast<size_t>(n), 0);
  auto edge = [&](NodeId a, NodeId b) {
    succ[static_cast<size_t>(a)].push_back(b);
    ++indeg[static_cast<size_t>(b)];
  };
  for (const Node& node : graph.nodes()) {
    for (ValueId v : node.inputs) {
      const NodeId p = graph.value(v).producer;
      if (p != kNoNode) edge(p, node.id);
    }
  }
  for (const Stage& st : plan.stages) {
    for (size_t k = 1; k < st.nodes.size(); ++k) edge(st.nodes[k - 1], st.nodes[k]);
  }
  std::priority_queue<NodeId, std::vector<NodeId>, std::greater<>> ready;
  for (NodeId i = 0; i < n; ++i) {
    if (indeg[static_cast<size_t>(i)] == 0) ready.push(i);
  }
  std::vector<NodeId> order;
  while (!ready.empty()) {
    const NodeId u = ready.top();
    ready.pop();
    order.push_back(u);
    for (NodeId v : succ[static_cast<size_t>(u)]) {
      if (--indeg[static_cast<size_t>(v)] == 0) ready.push(v);
    }
  }
  PARTITA_CHECK(static_cast<int>(order.size()) == n,
                "plan: the stages' node lists contradict the graph's data "
                "dependencies (a cycle through ",
                n - static_cast<int>(order.size()), " nodes); plan again");
  return order;
}

// Inference: the most bytes alive at once on a device while one of its nodes runs on `fraction` of the
// graph's batch,
// walking the device's own node list (`nodes`, in its order): a storage from the device's first touch of it
// (its producer here, else its first reader here: a received value) to its last reader here (the graph's end
// for an output produced here); one produced here and read only elsewhere is handed over once made. The
// running node's kernel also holds its working memory on `site` (kernel_scratch, as StageModel::peak_live).
double device_live_peak(const Graph& graph, const std::vector<ValueId>& root,
                        const std::vector<const KernelScratch*>& scratch_of, const std::vector<NodeId>& nodes,
                        double fraction, const KernelSite& site) {
  const double per = fraction;
  const int len = static_cast<int>(nodes.size());
  if (len == 0) return 0;
  std::vector<int> pos(static_cast<size_t>(graph.num_nodes()), -1);
  for (int k = 0; k < len; ++k) pos[static_cast<size_t>(nodes[static_cast<size_t>(k)])] = k;
  std::vector<int> born(static_cast<size_t>(graph.num_values()), len), dies(born.size(), -1);
  std::vector<bool> output(born.size(), false);
  for (ValueId v : graph.outputs()) output[static_cast<size_t>(root[static_cast<size_t>(v)])] = true;
  const auto weightlike = [](const Value& v) {
    return v.role == ValueRole::kParameter || v.role == ValueRole::kBuffer || v.role == ValueRole::kConstant;
  };
  for (const Value& v : graph.values()) {
    if (weightlike(v)) continue;
    const auto r = static_cast<size_t>(root[static_cast<size_t>(v.id)]);
    const auto touch = [&](NodeId n) {
      const int k = n == kNoNode ? -1 : pos[static_cast<size_t>(n)];
      if (k < 0) return;
      born[r] = std::min(born[r], k);
      dies[r] = std::max(dies[r], k);
    };
    touch(v.producer);
    for (NodeId u : v.users) touch(u);
  }
  std::vector<double> diff(static_cast<size_t>(len) + 1, 0.0);
  for (size_t r = 0; r < born.size(); ++r) {
    if (dies[r] < 0) continue;
    const Value& storage = graph.value(static_cast<ValueId>(r));
    const bool made_here = storage.producer != kNoNode && pos[static_cast<size_t>(storage.producer)] >= 0;
    const int end = output[r] && made_here ? len - 1 : dies[r];
    const double b = static_cast<double>(storage.bytes().value()) * per;
    diff[static_cast<size_t>(born[r])] += b;
    diff[static_cast<size_t>(end) + 1] -= b;
  }
  double alive = 0, peak = 0;
  for (int k = 0; k < len; ++k) {
    alive += diff[static_cast<size_t>(k)];
    const KernelScratch* kernel = scratch_of[static_cast<size_t>(nodes[static_cast<size_t>(k)])];
    peak = std::max(peak, alive + (kernel ? kernel_scratch_bytes(*kernel, per, site) : 0.0));
  }
  return peak;
}

// Training on a device with memory of its own: every sample's saved activations (all forwards run before the
// backwards: what `nodes` save and the values the device receives, `received` per sample; what does not
// depend on the batch once per microbatch) beside the largest node's working set, less what the device's
// later nodes saved (backward has freed that by then, as in StageModel::backward_workspace).
double saved_and_workspace(const StageModel& model, const std::vector<NodeId>& nodes, double received, int mb,
                           int global_batch) {
  double ws = 0;
  SampleBytes saved_later;
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    ws = std::max(ws, (model.workspace(*it) - saved_later).at(mb));
    saved_later = saved_later + model.saved(*it, *it);
  }
  const int microbatches = (global_batch + mb - 1) / mb;
  return ws + (received + saved_later.per_sample) * global_batch + saved_later.fixed * microbatches;
}

// Training memory of the devices whose memory is their machine's (CPU devices), over the simulated timeline:
// what the branch engine (runtime/engine_branch.cpp) holds, each as an interval of the step on one device:
//   - what a node saves for backward (StageModel::saved), from the end of its forward to the end
//     of its backward, per microbatch; its backward's working set (StageModel::workspace) while that runs;
//   - a value sent between two CPU devices of one machine (or to a later segment of its own device) is one
//     storage, held at both ends for backward: by the receiver's leaf until the backward of the reader's
//     segment ends, by the sender's root until the backward of the producer's segment starts (the engine
//     hands the roots to autograd and keeps none: runtime/src/backward_from.h). Counted once, on the
//     producer, where autograd does not save it anyway; one received from a device with memory of its own
//     is a new host tensor until the backward of its first reader there ends;
//   - the gradient of a received value: made by the receiving device's backward (counted from the first of
//     its readers there to end), handed back and freed when the producer's backward ends; on the sender while
//     its backward runs when only the sender is a CPU device;
//   - while a forward runs, the storages it makes and its kernel's working memory (kernel_scratch_bytes); a
//     storage nothing saves or holds across segments from then to the end of its last reader's forward on
//     that device;
//   - the loss (StageModel::loss_per_sample) from its output's forward to that node's backward;
//   - the batch (graph inputs) for the whole step;
//   - gradients of the parameters only CPU devices of one machine read: model_state counts them all, but the
//     engine starts a step without them, so each is missing (a negative interval) until the first backward of
//     a reader starts; every later backward of a reader makes a fresh one and adds it in, holding the copy
//     while it runs.
struct HeldInterval {
  int device = -1;          // cluster index of the device that holds it
  double from = 0, to = 0;  // seconds of the step
  double bytes = 0;         // negative: not there in that interval although model_state counts it
};

// The most bytes held at once beyond model state, per CPU device and per machine (all its CPU devices
// together), never below 0. Events at one instant free before they allocate.
struct CpuPeaks {
  std::map<int, double> device;
  std::map<std::string, double> machine;
};

CpuPeaks cpu_peaks(const std::vector<HeldInterval>& held, const Cluster& cluster) {
  struct Event {
    double at, delta;
    int device;
  };
  std::vector<Event> events;
  for (const HeldInterval& h : held) {
    if (!(h.to > h.from) || h.bytes == 0) continue;
    events.push_back({h.from, h.bytes, h.device});
    events.push_back({h.to, -h.bytes, h.device});
  }
  std::sort(events.begin(), events.end(),
            [](const Event& a, const Event& b) { return a.at != b.at ? a.at < b.at : a.delta < b.delta; });
  CpuPeaks peaks;
  std::map<int, double> device_now;
  std::map<std::string, double> machine_now;
  for (const Event& e : events) {
    const std::string& node = cluster.devices[static_cast<size_t>(e.device)].node;
    const double d = device_now[e.device] += e.delta;
    const double m = machine_now[node] += e.delta;
    peaks.device[e.device] = std::max(peaks.device[e.device], d);
    peaks.machine[node] = std::max(peaks.machine[node], m);
  }
  return peaks;
}

// The simulated step a memory walk reads: task times, where each node runs, and byte counts.
struct StepView {
  StepView(const Plan& p, const Graph& g, const StageModel& m, const TaskGraph& t,
           const std::vector<int>& dev_of)
      : plan(p),
        graph(g),
        model(m),
        tg(t),
        device_of_node(dev_of),
        scale(static_cast<double>(p.microbatch_size()) / m.graph_batch()),
        scratch_of(static_cast<size_t>(g.num_nodes()), nullptr) {
    for (const KernelScratch& k : m.kernels()) scratch_of[static_cast<size_t>(k.node)] = &k;
    for (const Work& w : t.work()) step_end = std::max(step_end, w.info.end.value());
  }
  double start(int task) const { return tg.work()[static_cast<size_t>(task)].info.start.value(); }
  double end(int task) const { return tg.work()[static_cast<size_t>(task)].info.end.value(); }
  int dev(NodeId i) const { return device_of_node[static_cast<size_t>(i)]; }
  bool on_cpu(int d) const { return !model.can_offload(d); }
  const std::string& machine(int d) const { return model.cluster().devices[static_cast<size_t>(d)].node; }
  // Whether a value sent from device a to device b is one storage for both: CPU devices of one machine in
  // one process (a plan for `partita launch` runs each device in a process of its own).
  bool shares_memory(int a, int b) const {
    return on_cpu(a) && on_cpu(b) && machine(a) == machine(b) &&
           (a == b || plan.processes != ProcessLayout::kLaunch);
  }
  // Both CPU devices, each in a process of its own: a value sent between them is copied.
  bool between_processes(int a, int b) const {
    return a != b && on_cpu(a) && on_cpu(b) && plan.processes == ProcessLayout::kLaunch;
  }
  double bytes(ValueId v) const { return static_cast<double>(graph.value(v).bytes().value()); }
  // The CPU device charged with the batch: the first reading a graph input, else the plan's first CPU device
  // (-1: none).
  int batch_holder() const {
    for (ValueId v : graph.inputs()) {
      for (NodeId u : graph.value(v).users) {
        if (on_cpu(dev(u))) return dev(u);
      }
    }
    for (NodeId i = 0; i < graph.num_nodes(); ++i) {
      if (on_cpu(dev(i))) return dev(i);
    }
    return -1;
  }
  // The whole step's batch, from 0 to `until`.
  HeldInterval batch(int holder, double until) const {
    double b = 0;
    for (ValueId v : graph.inputs()) b += bytes(v) * plan.global_batch / model.graph_batch();
    return {holder, 0, until, b};
  }
  // While node i's forward (task f) runs: the storages it makes (`root`: storage roots) and its kernel's
  // working memory.
  HeldInterval making(NodeId i, int f, const std::vector<ValueId>& root) const {
    double b = 0;
    for (ValueId v : graph.node(i).outputs) {
      if (root[static_cast<size_t>(v)] == v) b += bytes(v) * scale;
    }
    if (const KernelScratch* k = scratch_of[static_cast<size_t>(i)])
      b += kernel_scratch_bytes(*k, scale, model.kernel_site(dev(i)));
    return {dev(i), start(f), end(f), b};
  }

  const Plan& plan;
  const Graph& graph;
  const StageModel& model;
  const TaskGraph& tg;
  const std::vector<int>& device_of_node;
  double scale;  // a microbatch's share of the graph's batch
  std::vector<const KernelScratch*> scratch_of;
  double step_end = 0;
};

// The intervals of a training step of a branch plan (see HeldInterval), from the simulated tasks:
// forward[j][i] and backward[j][i] are the task ids of node i's microbatch j.
std::vector<HeldInterval> training_intervals(const StepView& step,
                                             const std::vector<std::vector<int>>& forward,
                                             const std::vector<std::vector<int>>& backward) {
  const Graph& graph = step.graph;
  const StageModel& model = step.model;
  const auto start = [&](int task) { return step.start(task); };
  const auto end = [&](int task) { return step.end(task); };
  const auto dev = [&](NodeId i) { return step.dev(i); };
  const auto on_cpu = [&](int d) { return step.on_cpu(d); };
  const auto bytes = [&](ValueId v) { return step.bytes(v); };
  const auto floating = [&](ValueId v) {
    const auto& ts = graph.value(v).tensors;
    return std::any_of(ts.begin(), ts.end(), [](const TensorMeta& t) { return is_floating(t.dtype); });
  };
  const int mb = step.plan.microbatch_size();
  const double scale = step.scale;
  const SavedByProducer by = saved_activations_by_producer(graph);
  // The loss's backward runs first in its last node's backward task (the task's first thousandth here),
  // before the node's own gradients are made: the moment StageModel::loss_backward_moment counts.
  const NodeId loss_node = graph.outputs().empty() ? kNoNode : graph.value(graph.outputs().front()).producer;
  const auto nodes_backward = [&](NodeId i, int task) {
    return i == loss_node ? start(task) + 1e-3 * (end(task) - start(task)) : start(task);
  };
  std::vector<HeldInterval> held;
  const int holder = step.batch_holder();
  if (holder < 0) return held;  // no CPU device
  held.push_back(step.batch(holder, step.step_end));

  // The engine's segments: a stage's list splits before a node that reads a value not received there yet
  // and after a node that sends a value; each segment runs one autograd backward, which ends at its first
  // node's. segment_head[i]: the first node of i's segment.
  std::vector<NodeId> segment_head(static_cast<size_t>(graph.num_nodes()), kNoNode);
  for (const Stage& st : step.plan.stages) {
    std::vector<bool> received(static_cast<size_t>(graph.num_values()), false);
    NodeId head = kNoNode;
    bool sent_before = false;
    for (NodeId i : st.nodes) {
      bool waits = false;
      for (ValueId v : graph.node(i).inputs) {
        const NodeId p = graph.value(v).producer;
        if (p == kNoNode || dev(p) == dev(i) || received[static_cast<size_t>(v)]) continue;
        received[static_cast<size_t>(v)] = true;
        waits = true;
      }
      if (head == kNoNode || waits || sent_before) head = i;
      segment_head[static_cast<size_t>(i)] = head;
      sent_before = false;
      for (ValueId v : graph.node(i).outputs) {
        for (NodeId u : graph.value(v).users) sent_before = sent_before || dev(u) != dev(i);
      }
    }
  }

  // [storage root] the nodes on its producer's device that read it (through any view of it).
  std::vector<std::vector<NodeId>> local_readers(static_cast<size_t>(graph.num_values()));
  for (const Value& v : graph.values()) {
    const auto r = static_cast<size_t>(by.root[static_cast<size_t>(v.id)]);
    const NodeId p = graph.value(static_cast<ValueId>(r)).producer;
    if (p == kNoNode) continue;
    for (NodeId u : v.users) {
      if (dev(u) == dev(p)) local_readers[r].push_back(u);
    }
  }
  for (size_t j = 0; j < forward.size(); ++j) {
    const auto& f = forward[j];
    const auto& b = backward[j];
    std::vector<bool> shared_counted(static_cast<size_t>(graph.num_values()), false);
    // [segment head] when the segment's backward starts: its first node backward to start.
    std::vector<double> segment_backward_start(static_cast<size_t>(graph.num_nodes()), step.step_end);
    for (const Node& node : graph.nodes()) {
      double& at = segment_backward_start[static_cast<size_t>(segment_head[static_cast<size_t>(node.id)])];
      at = std::min(at, start(b[node.id]));
    }
    for (const Node& node : graph.nodes()) {
      const NodeId i = node.id;
      const int d = dev(i);
      if (on_cpu(d)) {
        held.push_back(step.making(i, f[i], by.root));
        held.push_back({d, end(f[i]), end(b[i]), model.saved(i, i).at(mb)});
        held.push_back({d, nodes_backward(i, b[i]), end(b[i]), model.workspace(i).at(mb)});
      }
      for (ValueId v : node.outputs) {
        // Readers in a later segment: on other devices (by device), or on this one (key d).
        std::map<int, std::vector<NodeId>> readers;
        for (NodeId u : graph.value(v).users) {
          if (dev(u) != d || segment_head[static_cast<size_t>(u)] != segment_head[static_cast<size_t>(i)])
            readers[dev(u)].push_back(u);
        }
        const NodeId head = segment_head[static_cast<size_t>(i)];
        const double producer_done = end(b[head]);
        for (const auto& [t, us] : readers) {
          double first_done = end(b[us.front()]), readers_done = 0;
          for (NodeId u : us) {
            first_done = std::min(first_done, end(b[u]));
            readers_done = std::max(readers_done, end(b[segment_head[static_cast<size_t>(u)]]));
          }
          const double last_done = std::max(producer_done, readers_done);
          const auto root = static_cast<size_t>(by.root[static_cast<size_t>(v)]);
          if (step.shares_memory(d, t)) {
            if (!by.saved[root] && !shared_counted[root]) {
              shared_counted[root] = true;
              const double root_released = segment_backward_start[static_cast<size_t>(head)];
              held.push_back({d, end(f[i]), std::max(readers_done, root_released),
                              bytes(static_cast<ValueId>(root)) * scale});
            }
          } else if (step.between_processes(d, t)) {
            // The receiver's copy until its readers' segments have gone back; the sender's root until its
            // segment's backward starts (where autograd does not save it anyway).
            held.push_back({t, end(f[i]), readers_done, bytes(v) * scale});
            if (!by.saved[root] && !shared_counted[root]) {
              shared_counted[root] = true;
              held.push_back({d, end(f[i]), segment_backward_start[static_cast<size_t>(head)],
                              bytes(static_cast<ValueId>(root)) * scale});
            }
          } else if (on_cpu(t)) {
            held.push_back({t, end(f[i]), last_done, bytes(v) * scale});
          }
          if (!floating(v)) continue;
          if (step.between_processes(d, t)) {
            // Its gradient: on the receiver until its segment sends it; then the sender's copy until the
            // producer's backward ends.
            held.push_back({t, first_done, readers_done, bytes(v) * scale});
            held.push_back({d, readers_done, producer_done, bytes(v) * scale});
          } else if (on_cpu(t)) {
            held.push_back({t, first_done, producer_done, bytes(v) * scale});
          } else if (on_cpu(d)) {
            held.push_back({d, start(b[i]), producer_done, bytes(v) * scale});
          }
        }
      }
    }
    // A storage nothing saves or holds across segments: from its producer's forward to its last reader's
    // there.
    for (size_t r = 0; r < local_readers.size(); ++r) {
      const NodeId p = graph.value(static_cast<ValueId>(r)).producer;
      if (p == kNoNode || by.saved[r] || shared_counted[r] || !on_cpu(dev(p))) continue;
      double last = end(f[p]);
      for (NodeId u : local_readers[r]) last = std::max(last, end(f[u]));
      held.push_back({dev(p), end(f[p]), last, bytes(static_cast<ValueId>(r)) * scale});
    }
    const NodeId p = loss_node;
    if (p != kNoNode && on_cpu(dev(p))) {
      held.push_back({dev(p), start(f[p]), end(b[p]), model.loss_per_sample() * mb});
      held.push_back({dev(p), start(b[p]), nodes_backward(p, b[p]), model.loss_backward_moment(p, mb)});
    }
  }

  for (const Parameter& param : graph.parameters()) {
    if (!param.requires_grad) continue;
    std::vector<NodeId> readers = graph.value(param.value).users;
    readers.erase(std::unique(readers.begin(), readers.end()), readers.end());
    if (readers.empty()) continue;
    const int keeper = dev(readers.front());
    const bool host_only = std::all_of(readers.begin(), readers.end(),
                                       [&](NodeId u) { return step.shares_memory(dev(u), keeper); });
    if (!host_only) continue;
    double made = step.step_end;
    for (const auto& b : backward) {
      for (NodeId u : readers) made = std::min(made, nodes_backward(u, b[u]));
    }
    const double weight = bytes(param.value);
    held.push_back({keeper, 0, made, -weight});
    for (const auto& b : backward) {
      for (NodeId u : readers) {
        const double from = nodes_backward(u, b[u]);
        if (from > made) held.push_back({dev(u), from, end(b[u]), weight});
      }
    }
  }
  return held;
}

// Inference memory of the CPU devices over the simulated timeline, as training_intervals for training: the
// batch for the whole step; while a forward runs, the storages it makes and its kernel's working memory; a
// storage made on a CPU device from then to the end of its last reader's forward on a CPU device of the
// machine in the same process (a value sent between them is one storage), counted on its producer; one
// received from a device with memory of its own, or from another process (`partita launch`), on the
// receiver as well, from the producer's forward to its last reader there; the graph's
// outputs until the engine gathers them after the step, when the gathered copy of several microbatches'
// pieces is made beside them (one piece, a single microbatch, is returned as it is: no copy).
std::vector<HeldInterval> inference_intervals(const StepView& step,
                                              const std::vector<std::vector<int>>& forward) {
  const Graph& graph = step.graph;
  const auto end = [&](int task) { return step.end(task); };
  const auto dev = [&](NodeId i) { return step.dev(i); };
  const auto on_cpu = [&](int d) { return step.on_cpu(d); };
  const auto bytes = [&](ValueId v) { return step.bytes(v); };
  const std::vector<ValueId> root = saved_activations_by_producer(graph).root;
  std::vector<HeldInterval> held;
  const int holder = step.batch_holder();
  if (holder < 0) return held;                // no CPU device
  const double gathered = step.step_end + 1;  // an instant after the step
  held.push_back(step.batch(holder, gathered));
  std::vector<bool> is_output(static_cast<size_t>(graph.num_values()), false);
  for (ValueId v : graph.outputs()) is_output[static_cast<size_t>(root[static_cast<size_t>(v)])] = true;
  // [storage root] its readers (through any view of it).
  std::vector<std::vector<NodeId>> readers(static_cast<size_t>(graph.num_values()));
  for (const Value& v : graph.values()) {
    for (NodeId u : v.users) readers[static_cast<size_t>(root[static_cast<size_t>(v.id)])].push_back(u);
  }
  for (const auto& f : forward) {
    for (NodeId i = 0; i < graph.num_nodes(); ++i) {
      if (on_cpu(dev(i))) held.push_back(step.making(i, f[i], root));
    }
    for (size_t r = 0; r < readers.size(); ++r) {
      const NodeId p = graph.value(static_cast<ValueId>(r)).producer;
      if (p == kNoNode) continue;
      const int d = dev(p);
      double here = is_output[r] && on_cpu(d) ? gathered : end(f[p]);
      std::map<int, double> elsewhere;  // device of another memory -> its last reader's end
      for (NodeId u : readers[r]) {
        const int t = dev(u);
        if (step.shares_memory(d, t)) {
          here = std::max(here, end(f[u]));
        } else if (on_cpu(t)) {
          elsewhere[t] = std::max(elsewhere.count(t) ? elsewhere[t] : end(f[p]), end(f[u]));
        }
      }
      if (on_cpu(d)) held.push_back({d, end(f[p]), here, bytes(static_cast<ValueId>(r)) * step.scale});
      for (const auto& [t, last] : elsewhere)
        held.push_back({t, end(f[p]), last, bytes(static_cast<ValueId>(r)) * step.scale});
    }
  }
  for (ValueId v : graph.outputs()) {
    const NodeId p = graph.value(v).producer;
    if (p != kNoNode && on_cpu(dev(p)) && step.plan.microbatches > 1)
      held.push_back(
          {dev(p), step.step_end, gathered, bytes(v) * step.plan.global_batch / step.model.graph_batch()});
  }
  return held;
}

}  // namespace

Simulation simulate_branch(const Plan& plan, const Graph& graph, const Cluster& cluster,
                           const CostTable& table, const SearchOptions& options) {
  const StageModel model(graph, cluster, table, options);
  const bool training = plan.mode == Mode::kTraining;
  const int m = plan.microbatches;
  const int mb = plan.microbatch_size();
  const double scale = static_cast<double>(mb) / model.graph_batch();
  const int n = graph.num_nodes();
  const int ns = static_cast<int>(plan.stages.size());
  TaskGraph tg;
  std::vector<int> stage_of(static_cast<size_t>(n)), dev_of_stage, res_of_stage;
  for (int s = 0; s < ns; ++s) {
    const Stage& st = plan.stages[static_cast<size_t>(s)];
    const DeviceGroup& g = plan.groups[static_cast<size_t>(st.group)];
    PARTITA_CHECK(g.devices.size() == 1, "plan: branch stage ", s, " runs on ", g.devices.size(),
                  " devices; a branch stage runs on one device");
    for (NodeId id : st.nodes) stage_of[static_cast<size_t>(id)] = s;
    dev_of_stage.push_back(model.device_index(g.devices[0]));
    res_of_stage.push_back(tg.add_resource(g.devices[0], dev_of_stage.back()));
  }
  const std::vector<NodeId> order = global_order(plan, graph);
  // Tasks: f[j][node], b[j][node].
  std::vector<std::vector<int>> f(static_cast<size_t>(m), std::vector<int>(static_cast<size_t>(n), -1));
  auto b = f;
  for (int j = 0; j < m; ++j) {
    for (NodeId i : order) {
      const int s = stage_of[static_cast<size_t>(i)];
      const int spec = model.spec_of(dev_of_stage[static_cast<size_t>(s)]);
      f[j][i] = tg.add(node_label("F", i, j), TaskKind::kForward, res_of_stage[s], s, j,
                       model.forward(spec, i, i, mb));
      if (training) {
        b[j][i] = tg.add(node_label("B", i, j), TaskKind::kBackward, res_of_stage[s], s, j,
                         model.backward(spec, i, i, mb));
      }
    }
  }
  std::map<std::pair<int, int>, int> lanes;  // (from stage, to stage) -> resource
  auto lane = [&](int from, int to) {
    auto [it, fresh] = lanes.try_emplace({from, to}, -1);
    if (fresh) {
      it->second = tg.add_resource("link " + plan.groups[plan.stages[from].group].devices[0] + "->" +
                                       plan.groups[plan.stages[to].group].devices[0],
                                   -1);
    }
    return it->second;
  };
  auto transfer_time = [&](int from, int to, Bytes bytes) {
    const auto& da = plan.groups[plan.stages[from].group].devices[0];
    const auto& db = plan.groups[plan.stages[to].group].devices[0];
    return p2p_time(bytes, cluster.link_between(da, db));
  };
  std::vector<double> received(static_cast<size_t>(ns), 0.0);  // bytes per sample a stage receives
  // Forward pass: tasks in the global order, microbatch by microbatch; transfers once per (value, consumer
  // stage).
  for (int j = 0; j < m; ++j) {
    for (NodeId i : order) {
      const int s = stage_of[static_cast<size_t>(i)];
      tg.enqueue(f[j][i]);
      std::map<int, std::vector<ValueId>> remote;  // consumer stage -> values of node i it reads
      for (ValueId v : graph.node(i).outputs) {
        for (NodeId u : graph.value(v).users) {
          tg.depend(f[j][u], f[j][i]);
          const int t = stage_of[static_cast<size_t>(u)];
          if (t == s) continue;
          auto& list = remote[t];
          if (std::find(list.begin(), list.end(), v) == list.end()) list.push_back(v);
        }
      }
      for (const auto& [t, values] : remote) {
        Bytes bytes(0);
        for (ValueId v : values) bytes += graph.value(v).bytes();
        if (j == 0)
          received[static_cast<size_t>(t)] += static_cast<double>(bytes.value()) / model.graph_batch();
        const int x = tg.add(node_label("send", i, j), TaskKind::kTransfer, lane(s, t), s, j,
                             transfer_time(s, t, bytes * scale));
        tg.depend(x, f[j][i]);
        for (ValueId v : values) {
          for (NodeId u : graph.value(v).users) {
            if (stage_of[static_cast<size_t>(u)] == t) tg.depend(f[j][u], x);
          }
        }
        tg.enqueue(x);
      }
    }
  }
  // Backward pass: reverse global order; a node's backward waits for its consumers' backwards (their
  // gradients).
  for (int j = 0; training && j < m; ++j) {
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      const NodeId i = *it;
      const int s = stage_of[static_cast<size_t>(i)];
      tg.depend(b[j][i], f[j][i]);
      tg.enqueue(b[j][i]);
      std::map<int, Bytes> back;  // producer stage -> gradient bytes node i sends back
      for (ValueId v : graph.node(i).inputs) {
        const NodeId p = graph.value(v).producer;
        if (p == kNoNode) continue;
        tg.depend(b[j][p], b[j][i]);
        const int t = stage_of[static_cast<size_t>(p)];
        if (t != s) back[t] += graph.value(v).bytes();
      }
      for (const auto& [t, bytes] : back) {
        const int x = tg.add(node_label("grad", i, j), TaskKind::kTransfer, lane(s, t), s, j,
                             transfer_time(s, t, bytes * scale));
        tg.depend(x, b[j][i]);
        for (ValueId v : graph.node(i).inputs) {
          const NodeId p = graph.value(v).producer;
          if (p != kNoNode && stage_of[static_cast<size_t>(p)] == t) tg.depend(b[j][p], x);
        }
        tg.enqueue(x);
      }
    }
  }
  add_update_task(tg, plan, graph, cluster, options);
  tg.run();

  // Weights as the engine places them (StageModel's WeightHome): a CPU device counts those first read by its
  // nodes (the host's tensors, each once) with their gradients and optimizer state; a device with memory of
  // its own holds every weight its nodes read and their gradients, and the optimizer state of the parameters
  // no other device reads.
  struct Weights {
    double all = 0, trainable = 0, state = 0;  // state: the trainable bytes whose optimizer state is here
  };
  std::vector<Weights> weights(static_cast<size_t>(ns));
  const std::vector<std::vector<int>> stages_of = plan.parameter_stages(graph);
  for (size_t i = 0; i < stages_of.size(); ++i) {
    const Parameter& p = graph.parameters()[i];
    const double bytes = static_cast<double>(graph.value(p.value).bytes().value());
    for (int s : stages_of[i]) {
      if (!model.can_offload(dev_of_stage[static_cast<size_t>(s)])) continue;
      Weights& w = weights[static_cast<size_t>(s)];
      w.all += bytes;
      if (!p.requires_grad) continue;
      w.trainable += bytes;
      if (stages_of[i].size() == 1) w.state += bytes;
    }
  }
  Simulation sim = tg.timeline(plan);
  const std::vector<ValueId> storage_root =
      training ? std::vector<ValueId>{} : saved_activations_by_producer(graph).root;
  const std::vector<KernelScratch> scratch = training ? std::vector<KernelScratch>{} : kernel_scratch(graph);
  std::vector<const KernelScratch*> scratch_of(static_cast<size_t>(n), nullptr);
  for (const KernelScratch& k : scratch) scratch_of[static_cast<size_t>(k.node)] = &k;
  const double per_sample = 1.0 / model.graph_batch();
  std::vector<int> device_of_node(static_cast<size_t>(n));
  for (NodeId i = 0; i < n; ++i)
    device_of_node[static_cast<size_t>(i)] =
        dev_of_stage[static_cast<size_t>(stage_of[static_cast<size_t>(i)])];
  const StepView step(plan, graph, model, tg, device_of_node);
  const CpuPeaks cpu =
      cpu_peaks(training ? training_intervals(step, f, b) : inference_intervals(step, f), cluster);
  for (int s = 0; s < ns; ++s) {
    const Stage& st = plan.stages[static_cast<size_t>(s)];
    const int d = dev_of_stage[static_cast<size_t>(s)];
    DevicePrediction dp{plan.groups[st.group].devices[0], Bytes(0), Seconds(0), Joules(0)};
    Weights held = weights[static_cast<size_t>(s)];
    if (!model.can_offload(d)) {
      for (NodeId i : st.nodes) {
        held.all += static_cast<double>(model.parameter_bytes(i, i).value());
        held.trainable += static_cast<double>(model.trainable_bytes(i, i).value());
      }
      held.state = held.trainable;
    }
    double state = held.all;  // the model state this device holds
    if (training) {
      state += held.trainable +
               static_cast<double>(
                   optimizer_state_bytes(Bytes(static_cast<int64_t>(held.state)), plan.optimizer).value());
    }
    // A CPU device: the most it holds at once over the simulated timeline (training_intervals,
    // inference_intervals). A device with memory of its own: in training every sample's saved activations
    // (all forwards run first) beside the largest op's working set; in inference what is alive at once
    // along its node list (device_live_peak).
    const double work = !model.can_offload(d) ? (cpu.device.count(d) ? cpu.device.at(d) : 0.0)
                        : training ? saved_and_workspace(model, st.nodes, received[static_cast<size_t>(s)],
                                                         mb, plan.global_batch)
                                   : device_live_peak(graph, storage_root, scratch_of, st.nodes,
                                                      per_sample * mb, model.kernel_site(d));
    dp.model_state = Bytes(static_cast<int64_t>(state));
    dp.peak_memory = Bytes(static_cast<int64_t>(state + work));
    for (const Work& w : tg.work()) {
      if (w.info.resource == res_of_stage[static_cast<size_t>(s)]) dp.busy += w.info.end - w.info.start;
    }
    const Bytes cap = model.memory_cap(d);
    if (dp.peak_memory > cap && sim.fits_memory) {
      sim.fits_memory = false;
      sim.memory_note = "device " + dp.device + " needs " + format_bytes(dp.peak_memory) + " but may use " +
                        format_bytes(cap);
    }
    dp.energy = device_energy(cluster.devices[static_cast<size_t>(d)].spec, dp.busy,
                              std::max(Seconds(0), sim.step_time - dp.busy));
    sim.prediction.energy += dp.energy;
    sim.prediction.devices.push_back(dp);
  }
  std::map<std::string, Bytes> machine_working;
  for (const auto& [node, bytes] : cpu.machine) machine_working[node] = Bytes(static_cast<int64_t>(bytes));
  predict_hosts(plan, graph, model, nullptr, std::vector<DeviceHostFacts>(sim.prediction.devices.size()), sim,
                &machine_working);
  return sim;
}

}  // namespace partita::detail

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
  for (int s = 0; s < ns; ++s) {
    const Stage& st = plan.stages[static_cast<size_t>(s)];
    const int d = dev_of_stage[static_cast<size_t>(s)];
    DevicePrediction dp{plan.groups[st.group].devices[0], Bytes(0), Seconds(0), Joules(0)};
    Weights held = weights[static_cast<size_t>(s)];
    double act = received[static_cast<size_t>(s)], ws = 0;
    for (NodeId i : st.nodes) {
      if (!model.can_offload(d)) {
        held.all += static_cast<double>(model.parameter_bytes(i, i).value());
        held.trainable += static_cast<double>(model.trainable_bytes(i, i).value());
      }
      act += model.saved_per_sample(i, i);
    }
    if (!model.can_offload(d)) held.state = held.trainable;
    // Inference: the largest op's working set. Training: backward reaches a node after freeing what this
    // device's later nodes saved for the microbatch, so its working set counts less those (as in
    // StageModel::backward_workspace_per_sample).
    double saved_later = 0;
    for (auto it = st.nodes.rbegin(); it != st.nodes.rend(); ++it) {
      ws = std::max(ws, model.workspace_per_sample(*it, *it) - (training ? saved_later : 0.0));
      saved_later += model.saved_per_sample(*it, *it);
    }
    double state = held.all;  // the model state this device holds
    if (training) {
      state += held.trainable +
               static_cast<double>(
                   optimizer_state_bytes(Bytes(static_cast<int64_t>(held.state)), plan.optimizer).value());
    }
    // Training keeps every sample's saved activations (all forwards run first) beside the largest op's
    // working set; inference what is alive at once on the device (device_live_peak).
    const double work = training ? ws * mb + act * plan.global_batch
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
  predict_hosts(plan, graph, model, nullptr, std::vector<Bytes>(sim.prediction.devices.size(), Bytes(0)),
                sim);
  return sim;
}

}  // namespace partita::detail

#include "partita/search/simulator.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "host_memory.h"
#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/cost/comm.h"
#include "partita/cost/energy.h"
#include "partita/search/process_layout.h"
#include "partita/search/stage_model.h"
#include "partita/search/tensor_model.h"
#include "simulate_branch.h"
#include "task_graph.h"
#include "update_task.h"

namespace partita {

std::string_view task_kind_name(TaskKind kind) {
  switch (kind) {
    case TaskKind::kForward:
      return "forward";
    case TaskKind::kBackward:
      return "backward";
    case TaskKind::kTransfer:
      return "transfer";
    case TaskKind::kAllReduce:
      return "allreduce";
    case TaskKind::kOffload:
      return "offload";
    case TaskKind::kUpdate:
      break;
  }
  return "update";
}

namespace {

using detail::TaskGraph;
using detail::Work;

// Microbatch order of one device: pairs (microbatch, is_backward).
std::vector<std::pair<int, bool>> device_order(Schedule schedule, bool training, int stage, int stages,
                                               int m) {
  std::vector<std::pair<int, bool>> order;
  if (!training) {
    for (int j = 0; j < m; ++j) order.push_back({j, false});
    return order;
  }
  if (schedule == Schedule::kGPipe) {
    for (int j = 0; j < m; ++j) order.push_back({j, false});
    for (int j = 0; j < m; ++j) order.push_back({j, true});
    return order;
  }
  const int warmup = std::min(stages - stage - 1, m);
  for (int j = 0; j < warmup; ++j) order.push_back({j, false});
  for (int i = 0; i < m; ++i) {
    if (warmup + i < m) order.push_back({warmup + i, false});
    order.push_back({i, true});
  }
  return order;
}

std::string label(const char* what, int stage, int mb) {
  return std::string(what) + " s" + std::to_string(stage) + (mb >= 0 ? " mb" + std::to_string(mb) : "");
}

// simulate() for a plan of ranges of nodes, once the options follow the plan and the cluster its processes.
// `messages`: the cluster whose links carry point-to-point transfers (the same as `cluster`, whose links
// carry collectives, unless the plan runs in several processes).
Simulation simulate_chain(const Plan& plan, const Graph& graph, const Cluster& cluster,
                          const Cluster& messages, const CostTable& table, const SearchOptions& opt) {
  const StageModel model(graph, cluster, table, opt);
  // Only plans with tensor-parallel groups use it (its inference tables cost a pass over the graph).
  std::optional<TensorModel> tensor;
  if (plan.has_tensor_groups()) tensor.emplace(model);
  auto replicas = [&](int s) {
    return plan.groups[static_cast<size_t>(plan.stages[static_cast<size_t>(s)].group)].replicas();
  };
  // The devices of device i's tensor-parallel group (the whole group for kData: unused there).
  auto tensor_peers = [](const DeviceGroup& g, size_t i) {
    const size_t t = static_cast<size_t>(g.tensor_degree());
    const auto first = g.devices.begin() + static_cast<std::ptrdiff_t>(i - i % t);
    return std::vector<std::string>(first, first + static_cast<std::ptrdiff_t>(t));
  };
  const bool training = plan.mode == Mode::kTraining;
  const int ns = static_cast<int>(plan.stages.size());
  const int m = plan.microbatches;
  const int mb = plan.microbatch_size();
  TaskGraph tg;
  // f[s][j][i], b[s][j][i]: forward/backward task ids; device resources in group order.
  std::vector<std::vector<std::vector<int>>> f(static_cast<size_t>(ns)), b(static_cast<size_t>(ns));
  std::vector<std::vector<int>> dev_res(static_cast<size_t>(ns)), dev_index(static_cast<size_t>(ns));
  for (int s = 0; s < ns; ++s) {
    const Stage& st = plan.stages[static_cast<size_t>(s)];
    const DeviceGroup& g = plan.groups[static_cast<size_t>(st.group)];
    f[static_cast<size_t>(s)].assign(static_cast<size_t>(m), {});
    b[static_cast<size_t>(s)].assign(static_cast<size_t>(m), {});
    for (size_t i = 0; i < g.devices.size(); ++i) {
      const int d = model.device_index(g.devices[i]);
      PARTITA_CHECK(st.offload == Offload::kNone || model.can_offload(d), "plan: stage ", s, " offloads ",
                    offload_name(st.offload), " from ", g.devices[i],
                    ", a CPU whose memory is host memory already; set that stage's offload to none");
      dev_index[static_cast<size_t>(s)].push_back(d);
      dev_res[static_cast<size_t>(s)].push_back(tg.add_resource(g.devices[i], d));
      const int spec = model.spec_of(d);
      const double share = g.batch_shares[i];
      Seconds fwd = model.forward(spec, st.first, st.last, share);
      Seconds bwd = model.backward(spec, st.first, st.last, share);
      // Activation offload copies the saved tensors synchronously on the stage's worker: the forward pays the
      // copies to the host and the backward the copies back.
      Seconds copy = model.activation_transfer(
          StageLoad{st.first, st.last, g.batch_shares[i], 1, st.checkpointing, st.offload});
      if (g.parallelism == GroupParallelism::kTensor) {
        const LinkSpec ring = slowest_link(cluster, tensor_peers(g, i));
        const int p = g.tensor_degree();
        fwd = tensor->forward(spec, st.first, st.last, share, p, ring);
        bwd = tensor->backward(spec, st.first, st.last, share, p, ring);
        if (copy.value() > 0)
          copy = Seconds(tensor->activation(st.first, st.last, p).at(share) / opt.host_bandwidth.value());
      }
      if (st.checkpointing == Checkpointing::kFull) bwd += fwd;
      fwd += copy;
      bwd += copy;
      for (int j = 0; j < m; ++j) {
        f[s][j].push_back(tg.add(label("F", s, j), TaskKind::kForward, dev_res[s][i], s, j, fwd));
        if (training)
          b[s][j].push_back(tg.add(label("B", s, j), TaskKind::kBackward, dev_res[s][i], s, j, bwd));
      }
    }
  }
  // Boundary transfers, one lane per direction.
  for (int s = 0; s + 1 < ns; ++s) {
    const auto& ga = plan.groups[static_cast<size_t>(plan.stages[s].group)];
    const auto& gb = plan.groups[static_cast<size_t>(plan.stages[s + 1].group)];
    // One lane per replica on the narrower side (a tensor-parallel group holds, and needs, its replica's
    // whole share of the activations).
    const int lanes = std::min(replicas(s), replicas(s + 1));
    const Bytes bytes = model.boundary_bytes(plan.stages[s].last, (mb + lanes - 1) / lanes);
    const Seconds t = p2p_time(bytes, messages.link_between(ga.devices[0], gb.devices[0]));
    const int fwd_lane = tg.add_resource("link s" + std::to_string(s) + "->s" + std::to_string(s + 1), -1);
    const int bwd_lane =
        training ? tg.add_resource("link s" + std::to_string(s + 1) + "->s" + std::to_string(s), -1) : -1;
    for (int j = 0; j < m; ++j) {
      const int tf = tg.add(label("send", s, j), TaskKind::kTransfer, fwd_lane, s, j, t);
      for (int x : f[s][j]) tg.depend(tf, x);
      for (int x : f[s + 1][j]) tg.depend(x, tf);
      tg.enqueue(tf);
      if (!training) continue;
      const int tb = tg.add(label("grad", s + 1, j), TaskKind::kTransfer, bwd_lane, s + 1, j, t);
      for (int x : b[s + 1][j]) tg.depend(tb, x);
      for (int x : b[s][j]) tg.depend(x, tb);
      tg.enqueue(tb);
    }
  }
  for (int s = 0; s < ns; ++s) {
    const Stage& st = plan.stages[static_cast<size_t>(s)];
    const DeviceGroup& g = plan.groups[static_cast<size_t>(st.group)];
    for (size_t i = 0; i < g.devices.size(); ++i) {
      for (auto [j, back] : device_order(plan.schedule, training, s, ns, m)) {
        if (back) {
          tg.depend(b[s][j][i], f[s][j][i]);
          tg.enqueue(b[s][j][i]);
        } else {
          tg.enqueue(f[s][j][i]);
        }
      }
    }
    if (!training) continue;
    int after = -1;
    // Replicas all-reduce their gradients; a tensor-parallel group's devices each hold a 1/t shard of the
    // split weights (the rest, whole), and the replicas' shards are all-reduced concurrently: the time of
    // one.
    if (g.replicas() > 1) {
      const Bytes bytes = g.parallelism == GroupParallelism::kData
                              ? model.trainable_bytes(st.first, st.last)
                              : tensor->trainable_bytes_per_device(st.first, st.last, g.tensor_degree());
      const Seconds t = allreduce_time(bytes, g.replicas(), slowest_link(cluster, g.devices));
      after = tg.add(label("allreduce", s, -1), TaskKind::kAllReduce,
                     tg.add_resource(label("allreduce", s, -1), -1), s, -1, t);
      for (const auto& per_mb : b[s])
        for (int x : per_mb) tg.depend(after, x);
      tg.enqueue(after);
    }
    if (!offloads_optimizer_state(st.offload)) continue;
    for (size_t i = 0; i < g.devices.size(); ++i) {
      const Seconds t = model.offload_time(StageLoad{st.first, st.last, 1, 1, st.checkpointing, st.offload});
      const int o = tg.add(label("offload", s, -1), TaskKind::kOffload,
                           tg.add_resource("host " + g.devices[i], -1), s, -1, t);
      if (after >= 0) tg.depend(o, after);
      for (const auto& per_mb : b[s]) tg.depend(o, per_mb[i]);
      tg.enqueue(o);
    }
  }
  add_update_task(tg, plan, graph, cluster, opt);
  tg.run();

  Simulation sim = tg.timeline(plan);
  // Inference, on `share` samples of a device's microbatch, beyond one microbatch's working set
  // (StageModel::memory): the input of the next microbatch, waiting while a forward runs (the engine's sender
  // waits while one message waits; one that waits holds its output, within its own working set), and on the
  // last stage the outputs of the earlier microbatches, kept until the step's outputs are put together.
  const auto inference_backlog = [&](int s, int share) {
    const Stage& st = plan.stages[static_cast<size_t>(s)];
    const double input = s > 0 ? model.input(st.first).at(share) : 0.0;
    double output = 0;
    if (s == ns - 1)
      for (ValueId v : graph.outputs()) output += static_cast<double>(graph.value(v).bytes().value());
    output *= static_cast<double>(share) / model.graph_batch();
    double most = 0;
    for (int j = 0; j < m; ++j) most = std::max(most, (j + 1 < m ? input : 0.0) + j * output);
    return most;
  };
  std::vector<detail::DeviceHostFacts> host_facts;  // per device prediction
  for (int s = 0; s < ns; ++s) {
    const Stage& st = plan.stages[static_cast<size_t>(s)];
    const DeviceGroup& g = plan.groups[static_cast<size_t>(st.group)];
    for (size_t i = 0; i < g.devices.size(); ++i) {
      const int d = dev_index[s][i];
      const int share = g.batch_shares[i];
      DevicePrediction dp{g.devices[i], Bytes(0), Seconds(0), Joules(0)};
      // Activation timeline: saved at forward end, recomputed at backward start, freed at backward end.
      struct Event {
        Seconds at;
        double delta;
      };
      std::vector<Event> events, host_events;
      std::vector<std::pair<Seconds, Seconds>> forwards, backwards;  // each task's start and end
      // Between forward and backward, checkpointing keeps only the stage input, activation offload what it
      // does not move; the rest comes back (recomputed or copied) when the backward starts (as memory()).
      const bool tp = g.parallelism == GroupParallelism::kTensor;
      const int p = g.tensor_degree();
      const double act =
          (tp ? tensor->activation(st.first, st.last, p) : model.activation(st.first, st.last)).at(share);
      double saved = act, back = 0;  // kept from forward end; back on the device from backward start
      if (st.checkpointing == Checkpointing::kFull) {
        saved = model.input(st.first).at(share);
        back = act;
      } else if (offloads_activations(st.offload)) {
        // Tensor-parallel groups copy all of their (split) activations, as the copy time above does.
        back = tp ? act : model.offloaded(st.first, st.last).at(share);
        saved = act - back;
      }
      // A shared input a CPU device holds once (StageModel::shared_input_once) is in every microbatch's
      // input: held for the whole step instead (it is part of each forward's own peak too).
      const double once = training ? model.shared_input_once(st.first, d) : 0.0;
      saved -= once;
      if (st.checkpointing == Checkpointing::kFull) back -= once;
      for (int j = 0; j < m; ++j) {
        const SimTask& ft = tg.work()[static_cast<size_t>(f[s][j][i])].info;
        dp.busy += ft.end - ft.start;
        if (!training) continue;
        const SimTask& bt = tg.work()[static_cast<size_t>(b[s][j][i])].info;
        dp.busy += bt.end - bt.start;
        events.push_back({ft.end, saved});
        forwards.emplace_back(ft.start, ft.end);
        backwards.emplace_back(bt.start, bt.end);
        if (back > 0) events.push_back({bt.start, back});
        events.push_back({bt.end, -(saved + back)});
        if (back > 0 && st.checkpointing != Checkpointing::kFull) {  // offloaded: on the host in between
          host_events.push_back({ft.end, back});
          host_events.push_back({bt.start, -back});
        }
      }
      const auto peak_of = [](std::vector<Event>& timeline) {
        std::stable_sort(timeline.begin(), timeline.end(), [](const Event& x, const Event& y) {
          return x.at < y.at || (x.at == y.at && x.delta < y.delta);
        });
        double live = 0, peak = 0;
        for (const auto& e : timeline) peak = std::max(peak, live += e.delta);
        return peak;
      };
      detail::DeviceHostFacts& facts = host_facts.emplace_back();
      facts.offloaded = Bytes(static_cast<int64_t>(peak_of(host_events)));
      if (training) {
        facts.kept = Bytes(static_cast<int64_t>(saved));
        if (s > 0 && !tp) facts.input = Bytes(static_cast<int64_t>(model.input(st.first).at(share)));
      }
      const WeightHome home = model.weight_home(d, static_cast<int>(g.devices.size()));
      const StageLoad base{st.first, st.last, share, 1, Checkpointing::kNone, st.offload, home, d, m};
      if (training) {
        // Each backward's peak beyond the activations in flight as it starts (StageModel::backward_peak,
        // TensorModel::backward_peak): the device's first of the step holds only the gradients made by then,
        // the later ones all of them.
        const Offload state =
            offloads_optimizer_state(st.offload) ? Offload::kOptimizerState : Offload::kNone;
        // A CPU device's process under `partita launch` keeps the gradients that live in the reducer's
        // buckets (distributed_reducer.h), zeroing them in place, and sets the others to none as one process
        // does (Engine::step). A one-stage data-parallel plan's are all in the buckets, so every one exists
        // all step, in the first backward and the forwards too (GPT 8x128 data-parallel training, 2
        // processes: 113.7 MiB measured per rank against 100.0 predicted without this). In a plan of several
        // stages the buckets hold only the weights several stages read, which the first backward counts as
        // made anyway (its unmade gradients are those of weights one node reads).
        const bool gradients_stay =
            plan.processes == ProcessLayout::kLaunch && !model.can_offload(d) && ns == 1;
        const StageLoad none{st.first, st.last, share, 0, Checkpointing::kNone, state, home, d, m};
        double first = 0, later = 0;
        Bytes unmade(0), unmade_replicated(0);
        if (tp) {
          // A launched tensor group of one replica: its ranks hold their parts of the split weights, whose
          // gradients are not in the buckets (engine_tensor); with replicas they keep whole weights, all in
          // the buckets.
          using There = TensorModel::GradientsAtStart;
          const There there = !gradients_stay     ? There::kNone
                              : g.replicas() == 1 ? There::kReplicated
                                                  : There::kAll;
          const TensorModel::BackwardPeak at_first =
              tensor->backward_peak(st.first, st.last, share, p, there);
          first = at_first.beyond_state;
          later = tensor->backward_peak(st.first, st.last, share, p, There::kAll).beyond_state;
          unmade_replicated = at_first.unmade_replicated;
        } else {
          const StageModel::BackwardPeak at_first =
              model.backward_peak(none, /*first_of_step=*/!gradients_stay);
          first = at_first.beyond_state;
          later = model.backward_peak(none, false).beyond_state;
          unmade = at_first.unmade_gradients;
        }
        std::stable_sort(events.begin(), events.end(),
                         [](const Event& x, const Event& y) { return x.at < y.at; });
        std::sort(forwards.begin(), forwards.end());  // by start
        std::sort(backwards.begin(), backwards.end());
        // What is live as a backward starts includes every event at that time.
        double live = 0, top = 0;
        size_t e = 0;
        for (size_t k = 0; k < backwards.size(); ++k) {
          while (e < events.size() && events[e].at <= backwards[k].first) live += events[e++].delta;
          const double value = live + once + (k == 0 ? first : later);
          if (k == 0 || value > top) {
            top = value;
            facts.unmade_gradients = k == 0 ? unmade : Bytes(0);
            facts.unmade_replicated = k == 0 ? unmade_replicated : Bytes(0);
          }
        }
        const Bytes state_bytes = tp ? tensor->model_state(st.first, st.last, p) : model.model_state(none);
        dp.peak_memory = state_bytes + Bytes(static_cast<int64_t>(top));
        if (!tp) {
          // Each forward's peak beside what the microbatches before it keep (StageModel::forward_peak; a
          // checkpointed stage's recompute holds as much): before the device's first backward no gradient
          // exists, after it every one counts. Tensor-parallel groups: not modelled (TensorModel has no
          // forward peak).
          const double forward = model.forward_peak(base);
          const double gradients = static_cast<double>(model.gradient_bytes(base).value());
          const Seconds first_backward = backwards.empty() ? Seconds(0) : backwards.front().first;
          double held = 0;
          size_t k = 0;
          for (const auto& task : forwards) {
            const Seconds start = task.first;
            while (k < events.size() && events[k].at <= start) held += events[k++].delta;
            const double value = static_cast<double>(state_bytes.value()) + held + forward -
                                 (start < first_backward && !gradients_stay ? gradients : 0.0);
            dp.peak_memory = std::max(dp.peak_memory, Bytes(static_cast<int64_t>(value)));
          }
          // The same figure over time, for a host whose process runs several CPU devices at once
          // (predict_hosts): the activations in flight and the shared input held once, no gradient before
          // the first backward, and each task's moments in turn (StageModel::forward_moments and
          // backward_moments), whose most is the task's own peak above. Not needed for a one-microbatch
          // pipeline (its stages peak in turn: host_memory.cpp) nor a launched plan (a device a process).
          if (!model.can_offload(d) && plan.processes != ProcessLayout::kLaunch && !(m == 1 && ns > 1)) {
            std::vector<detail::DeviceHostFacts::Change>& working = facts.working;
            working.push_back({Seconds(0), once - gradients});
            working.push_back({first_backward, gradients});
            for (const Event& event : events) working.push_back({event.at, event.delta});
            const auto add_task = [&](std::pair<Seconds, Seconds> task,
                                      const std::vector<StageModel::Moment>& moments, double less) {
              const auto [start, end] = task;
              double level = 0;
              for (const StageModel::Moment& moment : moments) {
                working.push_back({start + (end - start) * moment.start, moment.bytes - less - level});
                level = moment.bytes - less;
              }
              working.push_back({end, -level});
            };
            const int spec = model.spec_of(d);
            const std::vector<StageModel::Moment> in_forward =
                model.forward_moments(spec, base, kMomentsPerTask);
            for (const auto& task : forwards) add_task(task, in_forward, once);  // `forward` has it
            const std::vector<StageModel::Moment> in_first = model.backward_moments(spec, none, true,
                                                                                    kMomentsPerTask),
                                                  in_later = model.backward_moments(spec, none, false,
                                                                                    kMomentsPerTask);
            for (size_t j = 0; j < backwards.size(); ++j)
              add_task(backwards[j], j == 0 ? in_first : in_later, 0);
          }
        }
      } else {
        dp.peak_memory = tp ? tensor->memory(st.first, st.last, share, p, 1, d) : model.memory(base);
      }
      if (!training) dp.peak_memory += Bytes(static_cast<int64_t>(inference_backlog(s, share)));
      // A tensor group's device in a process of its own (a one-stage plan under `partita launch`) receives
      // its p - 1 peers' parts of every all-reduce and gather (DistributedTensorGroupLink) before it adds or
      // joins them; counted at the largest collective that can meet the device's peak beside it
      // (TensorModel::received_parts; GPT 8x128 inference, 2 processes: 24.17 MiB measured per rank, 20.16
      // predicted without it). Training counts the backward's exchanges only: the GPT's gathered logits
      // (4 MiB of its peer's part, one microbatch) arrive in the forward, and counting them predicted
      // 104.63 MiB per rank against 98.62 measured.
      // And, training several microbatches with replicas (whose ranks keep the whole weights, every gradient
      // in the reducer's buckets), its parts of the split weights gather their gradients in leaves of their
      // own (engine_tensor) beside the parameters' kept ones until the step's end. (One replica, 4
      // microbatches, when its ranks still kept every gradient: MLP 8x64 0.78 MiB measured per rank, 0.62
      // predicted without it; GPT 8x128 51.0 and 45.2. Since they keep none of their parts': 0.65 and 42.99
      // MiB measured, 0.62 and 45.24 predicted.)
      if (tp && plan.processes == ProcessLayout::kLaunch && plan.stages.size() == 1 &&
          !model.can_offload(d)) {
        dp.peak_memory += tensor->received_parts(st.first, st.last, share, p);
        if (training && plan.microbatches > 1 && g.replicas() > 1)
          dp.peak_memory += tensor->trainable_bytes_per_device(st.first, st.last, p) -
                            tensor->replicated_trainable_bytes(st.first, st.last);
      }
      // A tensor-parallel device's model state: its shards of the split weights and the replicated rest (with
      // gradients and optimizer state when training). On a CPU these are the host's tensors (the engine's
      // weight parts are views of the parameters), which the host counts once.
      dp.model_state = tp ? tensor->model_state(st.first, st.last, p) : model.model_state(base);
      const Bytes cap = model.memory_cap(d);
      if (dp.peak_memory > cap && sim.fits_memory) {
        sim.fits_memory = false;
        sim.memory_note = "device " + g.devices[i] + " needs " + format_bytes(dp.peak_memory) +
                          " but may use " + format_bytes(cap);
      }
      const Seconds idle = std::max(Seconds(0), sim.step_time - dp.busy);
      dp.energy = device_energy(cluster.devices[static_cast<size_t>(d)].spec, dp.busy, idle);
      sim.prediction.energy += dp.energy;
      sim.prediction.devices.push_back(dp);
    }
  }
  detail::predict_hosts(plan, graph, model, tensor ? &*tensor : nullptr, host_facts, sim);
  return sim;
}

}  // namespace

Simulation simulate(const Plan& plan, const Graph& graph, const Cluster& cluster, const CostTable& table,
                    const SearchOptions& options) {
  plan.check_against(graph);
  // Each stage's devices are a resource of its own here: stages sharing a group would be simulated as if
  // they ran at once (groups never share devices: Plan::check_against).
  std::vector<int> stage_of_group(plan.groups.size(), -1);
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    int& first = stage_of_group[static_cast<size_t>(plan.stages[s].group)];
    PARTITA_CHECK(first < 0, "plan: stages ", first, " and ", s, " both run on ",
                  plan.groups[static_cast<size_t>(plan.stages[s].group)].devices[0],
                  "; the simulator models each stage on devices of its own (partita plan never shares them): "
                  "give stage ",
                  s, " a group of other devices");
    first = static_cast<int>(s);
  }
  SearchOptions opt = options;
  opt.mode = plan.mode;
  opt.global_batch = plan.global_batch;
  opt.optimizer = plan.optimizer;
  opt.loss = plan.loss;
  opt.processes = plan.processes;
  std::optional<Cluster> messages, collectives;
  if (plan.processes == ProcessLayout::kLaunch) {
    PARTITA_CHECK(opt.process_links,
                  "plan: its prediction is for the processes of `partita launch`, but no "
                  "links between processes were given; measure them with `partita profile`");
    messages = cluster_across_processes(cluster, plan, opt.process_links->message);
    collectives = cluster_across_processes(cluster, plan, opt.process_links->collective);
  }
  // A branch plan's devices pass values point to point only.
  if (plan.branch_layout())
    return detail::simulate_branch(plan, graph, messages ? *messages : cluster, table, opt);
  return simulate_chain(plan, graph, collectives ? *collectives : cluster, messages ? *messages : cluster,
                        table, opt);
}

Plan evaluate(const Plan& plan, const Graph& graph, const Cluster& cluster, const CostTable& table,
              const SearchOptions& options) {
  Plan out = plan;
  out.prediction = simulate(plan, graph, cluster, table, options).prediction;
  return out;
}

Json chrome_trace(const Simulation& sim) {
  Json events = Json::array();
  for (size_t r = 0; r < sim.resources.size(); ++r) {
    const int pid = sim.resources[r].device >= 0 ? 0 : 1;
    events.push_back(Json{{"name", "thread_name"},
                          {"ph", "M"},
                          {"pid", pid},
                          {"tid", r},
                          {"args", Json{{"name", sim.resources[r].name}}}});
  }
  for (const auto& t : sim.tasks) {
    const int pid = sim.resources[static_cast<size_t>(t.resource)].device >= 0 ? 0 : 1;
    events.push_back(Json{{"name", t.name},
                          {"cat", task_kind_name(t.kind)},
                          {"ph", "X"},
                          {"pid", pid},
                          {"tid", t.resource},
                          {"ts", t.start.value() * 1e6},
                          {"dur", (t.end - t.start).value() * 1e6},
                          {"args", Json{{"stage", t.stage}, {"microbatch", t.microbatch}}}});
  }
  return Json{{"traceEvents", events}, {"displayTimeUnit", "ms"}};
}

}  // namespace partita

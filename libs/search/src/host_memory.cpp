#include "host_memory.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <string>

#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/cost/loss.h"
#include "partita/cost/memory.h"
#include "partita/search/process_layout.h"
#include "update_task.h"

namespace partita::detail {

namespace {

// Where one graph parameter's bytes live, following the engine's place_parameters (runtime/engine.cpp).
struct ParameterPlace {
  int keeper = -1;                 // cluster device index holding the tensor itself; -1: the host
  std::vector<std::string> nodes;  // machines with a device of a stage that reads it
};

// `position` >= 0: only the device at that position of each stage's group reads it (a one-stage plan's
// process of `partita launch`).
ParameterPlace place_of(const Plan& plan, const StageModel& model, const std::vector<int>& stages,
                        bool trainable, int position = -1) {
  const Cluster& cluster = model.cluster();
  ParameterPlace out;
  int readers = 0, only = -1;
  bool offloads_state = false;
  for (int s : stages) {
    const Stage& st = plan.stages[static_cast<size_t>(s)];
    const std::vector<std::string>& devices = plan.groups[static_cast<size_t>(st.group)].devices;
    for (size_t i = 0; i < devices.size(); ++i) {
      if (position >= 0 && static_cast<int>(i) != position) continue;
      const int d = model.device_index(devices[i]);
      ++readers;
      only = d;
      offloads_state = offloads_state || offloads_optimizer_state(st.offload);
      const std::string& node = cluster.devices[static_cast<size_t>(d)].node;
      if (std::find(out.nodes.begin(), out.nodes.end(), node) == out.nodes.end()) out.nodes.push_back(node);
    }
  }
  if (model.training() && readers == 1 && model.can_offload(only) && !(trainable && offloads_state))
    out.keeper = only;
  return out;
}

// Whether every device of `g` is a CPU (the host's memory is theirs).
bool all_cpu(const DeviceGroup& g, const StageModel& model) {
  return std::none_of(g.devices.begin(), g.devices.end(),
                      [&](const std::string& id) { return model.can_offload(model.device_index(id)); });
}

HostPrediction& host_of(std::vector<HostPrediction>& hosts, const std::string& node) {
  for (auto& h : hosts) {
    if (h.node == node) return h;
  }
  PARTITA_ASSERT(false, "machine ", node, " runs no device of the plan");
  return hosts.front();
}

// What fills a machine's host memory, largest part first, for the note of a plan that does not fit.
std::string parts(const HostPrediction& h) {
  std::vector<std::pair<Bytes, std::string>> items{{h.model_state, "weights, gradients and optimizer state"},
                                                   {h.cpu_working, "CPU devices' activations"},
                                                   {h.offloaded_activations, "offloaded activations"},
                                                   {h.gathered_outputs, "gathered outputs"},
                                                   {h.step_batch, "the step's batch"},
                                                   {h.update_working, "the optimizer step's temporaries"}};
  std::stable_sort(items.begin(), items.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string out;
  for (const auto& [bytes, what] : items) {
    if (bytes.value() == 0) continue;
    out += (out.empty() ? "" : ", ") + what + " " + format_bytes(bytes);
  }
  return out;
}

// Who holds host memory: each machine's one process, or each process of `partita launch`.
struct Holders {
  std::vector<HostPrediction> hosts;
  std::vector<int> rank_of;                    // [holder] its launch rank (launched; -1 otherwise)
  std::vector<std::vector<size_t>> holder_at;  // [stage][i] the holder of device i of the stage's group
  // [device prediction] its holder; the predictions follow the stages and each stage's group's devices.
  std::vector<size_t> holder_of_prediction;
};

Holders find_holders(const Plan& plan, const StageModel& model, bool launched) {
  const Cluster& cluster = model.cluster();
  Holders out;
  out.holder_at.resize(plan.stages.size());
  std::vector<int> stage_of_group(plan.groups.size(), -1);
  for (size_t s = 0; s < plan.stages.size(); ++s)
    stage_of_group[static_cast<size_t>(plan.stages[s].group)] = static_cast<int>(s);
  const std::vector<int> ranks = launched ? launch_process_of_devices(plan) : std::vector<int>();
  size_t used = 0;  // position in Plan::used_devices(), which lists devices in group order
  for (size_t g = 0; g < plan.groups.size(); ++g) {
    for (const std::string& id : plan.groups[g].devices) {
      const std::string& node = cluster.devices[static_cast<size_t>(model.device_index(id))].node;
      const int rank = launched ? ranks[used] : -1;
      ++used;
      size_t k = 0;
      while (k < out.hosts.size() && !(out.hosts[k].node == node && (!launched || out.rank_of[k] == rank)))
        ++k;
      if (k == out.hosts.size()) {
        out.hosts.push_back(HostPrediction{node});
        out.rank_of.push_back(rank);
      }
      if (stage_of_group[g] >= 0) out.holder_at[static_cast<size_t>(stage_of_group[g])].push_back(k);
    }
  }
  for (const ClusterDevice& d : cluster.devices) {
    if (d.spec.kind != DeviceKind::kCpu) continue;
    for (auto& h : out.hosts) {
      if (h.node == d.node) h.capacity = std::max(h.capacity, d.spec.memory);
    }
  }
  for (const std::vector<size_t>& at : out.holder_at)
    out.holder_of_prediction.insert(out.holder_of_prediction.end(), at.begin(), at.end());
  return out;
}

// Model state. One process per machine: it loads the whole model; the engine moves some to devices.
// Launched: every rank loads the whole model, and a pipeline's rank then releases the weights only other
// stages read (it keeps those no node reads), a tensor group's rank the parts of the split weights other
// than its own (cmd_run / plan_runner). A rank's reducer all-reduces a one-stage plan's gradients and a
// pipeline's shared ones: those stay on the host (engine.cpp place_parameters). Also the optimizer step's
// temporaries (update_working).
void add_model_state(const Plan& plan, const Graph& graph, const StageModel& model, const TensorModel* tensor,
                     const std::vector<std::vector<int>>& stages_of, Holders& holders) {
  const Cluster& cluster = model.cluster();
  const bool training = model.training();
  const bool launched = plan.processes == ProcessLayout::kLaunch;
  const bool one_stage = plan.stages.size() == 1;
  std::vector<HostPrediction>& hosts = holders.hosts;
  // A launched holder's stage (every process of a one-stage plan runs stage 0).
  const auto stage_of_holder = [&](size_t k) { return one_stage ? 0 : holders.rank_of[k]; };
  std::vector<Bytes> trainable_on_host(hosts.size(), Bytes(0)), largest_updated(hosts.size(), Bytes(0));
  for (size_t i = 0; i < graph.parameters().size(); ++i) {
    const Parameter& param = graph.parameters()[i];
    const Bytes bytes = graph.value(param.value).bytes();
    if (!launched) {
      const ParameterPlace place = place_of(plan, model, stages_of[i], param.requires_grad);
      for (size_t k = 0; k < hosts.size(); ++k) {
        HostPrediction& h = hosts[k];
        if (place.keeper >= 0 && cluster.devices[static_cast<size_t>(place.keeper)].node == h.node) continue;
        h.model_state += bytes;
        const bool read_here = std::find(place.nodes.begin(), place.nodes.end(), h.node) != place.nodes.end();
        if (training && param.requires_grad && read_here) {
          trainable_on_host[k] += bytes;
          largest_updated[k] = std::max(largest_updated[k], bytes);
        }
      }
      continue;
    }
    const bool reduced = param.requires_grad && (one_stage || stages_of[i].size() > 1);
    for (size_t k = 0; k < hosts.size(); ++k) {
      const int stage = stage_of_holder(k);
      const bool read_here = std::binary_search(stages_of[i].begin(), stages_of[i].end(), stage);
      if (!one_stage && !read_here && !stages_of[i].empty()) continue;  // released
      if (read_here && !reduced &&
          place_of(plan, model, {stage}, param.requires_grad, one_stage ? holders.rank_of[k] : -1).keeper >=
              0)
        continue;  // kept on the process's one device with memory of its own
      Bytes held = bytes;
      const DeviceGroup& g = plan.groups[static_cast<size_t>(plan.stages[static_cast<size_t>(stage)].group)];
      if (one_stage && g.parallelism == GroupParallelism::kTensor) {
        PARTITA_ASSERT(tensor != nullptr, "a plan with a tensor-parallel group needs its TensorModel");
        const Value& v = graph.value(param.value);
        if (std::any_of(v.users.begin(), v.users.end(), [&](NodeId u) { return tensor->split(u); }))
          held = Bytes(bytes.value() / g.tensor_degree());
      }
      HostPrediction& h = hosts[k];
      h.model_state += held;
      if (training && param.requires_grad && read_here) {
        trainable_on_host[k] += held;
        largest_updated[k] = std::max(largest_updated[k], held);
      }
    }
  }
  for (size_t k = 0; k < hosts.size(); ++k) {
    hosts[k].model_state +=
        trainable_on_host[k] + optimizer_state_bytes(trainable_on_host[k], plan.optimizer);  // + gradients
    // The update runs after every backward: the activations are gone by then.
    hosts[k].update_working = optimizer_step_temporaries(largest_updated[k], plan.optimizer);
  }
  // An update split among CPU devices (update_task.h) runs its parts at once: each its largest tensor's
  // temporaries.
  if (const std::optional<UpdateSplit> split = update_split(plan, graph, cluster)) {
    std::vector<Bytes> largest(split->devices.size(), Bytes(0));
    size_t t = 0;
    for (const Parameter& param : graph.parameters()) {
      if (!param.requires_grad) continue;
      Bytes& l = largest[static_cast<size_t>(split->part[t++])];
      l = std::max(l, graph.value(param.value).bytes());
    }
    Bytes working(0);
    for (const Bytes& l : largest) working += optimizer_step_temporaries(l, plan.optimizer);
    const std::string& node = cluster.devices[static_cast<size_t>(split->devices[0])].node;
    host_of(hosts, node).update_working = working;
  }
}

// [holder] the rows of one microbatch that the CPU devices of stage `s` count in their figures (a tensor
// group's replica is read by its t devices: its rows count once).
std::vector<int64_t> rows_counted(const Plan& plan, const StageModel& model, const Holders& holders,
                                  size_t s) {
  std::vector<int64_t> rows(holders.hosts.size(), 0);
  const std::vector<size_t>& at = holders.holder_at[s];
  const DeviceGroup& g = plan.groups[static_cast<size_t>(plan.stages[s].group)];
  const size_t t = static_cast<size_t>(g.tensor_degree());
  for (size_t i = 0; i < g.devices.size(); ++i) {
    if (i % t != 0 && at[i] == at[i - i % t]) continue;
    if (model.can_offload(model.device_index(g.devices[i]))) continue;
    rows[at[i]] += g.batch_shares[i];
  }
  return rows;
}

// [holder] the rows of the step's inputs that the first stage's CPU devices count.
std::vector<int64_t> input_rows_counted(const Plan& plan, const StageModel& model, const Holders& holders) {
  if (plan.branch_layout() || plan.stages.empty() || plan.stages.front().first != 0)
    return std::vector<int64_t>(holders.hosts.size(), 0);
  return rows_counted(plan, model, holders, 0);
}

// The most that changes in time add up to, every change at one time counted before the sum is read.
Bytes most_at_once(std::vector<DeviceHostFacts::Change>& changes) {
  std::stable_sort(changes.begin(), changes.end(), [](const auto& x, const auto& y) { return x.at < y.at; });
  double live = 0, most = -std::numeric_limits<double>::infinity();
  for (size_t e = 0; e < changes.size();) {
    const Seconds at = changes[e].at;
    while (e < changes.size() && changes[e].at == at) live += changes[e++].bytes;
    most = std::max(most, live);
  }
  return Bytes(static_cast<int64_t>(most));
}

// The working memory of each holder's CPU devices (cpu_working) and the activations they offload.
// `cpu_working`: predict_hosts'.
void add_working_memory(const Plan& plan, const Graph& graph, const StageModel& model,
                        const std::vector<DeviceHostFacts>& facts, const Simulation& sim,
                        const std::map<std::string, Bytes>* cpu_working, Holders& holders) {
  const bool training = model.training();
  std::vector<HostPrediction>& hosts = holders.hosts;
  // A branch plan's time-resolved figure is each machine's; a launched plan's processes add their devices'.
  const bool timeline_working = cpu_working != nullptr && plan.processes != ProcessLayout::kLaunch;
  // A step of one microbatch runs a pipeline's stages one after the other (training: their forwards, then
  // their backwards in reverse): each holder's CPU devices peak stage by stage, not at once (below).
  // Elsewhere, training, the devices run at once but peak at different times: their working memory over the
  // simulated step (DeviceHostFacts::working) adds up moment by moment, and the holder holds the most of
  // the sum. (Branchy, 8 samples, a pipeline of 8 microbatches on cpu:0 + cpu:1: 12.13 MiB predicted as the
  // sum of the devices' peaks, 10.87 over time, 10.37 to 10.92 measured.) Not modelled there: a tensor one
  // stage sends another is one storage, in both their figures while both hold it (counted once, the same
  // plan would be predicted 10.24 MiB, under every measured run: the simulated times are the engine's order
  // but not its pace, and the measured peaks meet more than the simulated ones). Inference, and a holder
  // with a device without such a figure (tensor-parallel), adds the devices' peaks.
  const bool stages_in_turn = plan.microbatches == 1 && !plan.branch_layout() && plan.stages.size() > 1;
  // [stage][holder] the working memory of the stage's CPU devices there; training, what they keep of the
  // microbatch for their backward and the part of their figure that is the stage's input.
  const auto per_stage = [&] {
    return std::vector<std::vector<Bytes>>(plan.stages.size(), std::vector<Bytes>(hosts.size(), Bytes(0)));
  };
  std::vector<std::vector<Bytes>> stage_working = per_stage(), stage_kept = per_stage(),
                                  stage_input = per_stage();
  // [stage][holder] whether every device of the stage is a CPU device of that holder: tensors such stages
  // hand each other are one storage.
  std::vector<std::vector<bool>> all_here(plan.stages.size(), std::vector<bool>(hosts.size(), true));
  // [holder] its CPU devices' working memory over the step (DeviceHostFacts::working), and whether each of
  // them has it.
  std::vector<std::vector<DeviceHostFacts::Change>> over_time(hosts.size());
  std::vector<bool> every_over_time(hosts.size(), true);
  for (size_t s = 0, k = 0; s < plan.stages.size(); ++s) {
    for (size_t i = 0; i < holders.holder_at[s].size(); ++i, ++k) {
      const DevicePrediction& dp = sim.prediction.devices[k];
      const int d = model.device_index(dp.device);
      const size_t holder = holders.holder_of_prediction[k];
      HostPrediction& h = hosts[holder];
      for (size_t other = 0; other < hosts.size(); ++other) {
        if (other != holder || model.can_offload(d)) all_here[s][other] = false;
      }
      if (!model.can_offload(d) && !(timeline_working && cpu_working->count(h.node))) {
        stage_working[s][holder] += dp.peak_memory - dp.model_state;
        const std::vector<DeviceHostFacts::Change>& working = facts[k].working;
        over_time[holder].insert(over_time[holder].end(), working.begin(), working.end());
        every_over_time[holder] = every_over_time[holder] && !working.empty();
        stage_kept[s][holder] += facts[k].kept;
        stage_input[s][holder] += facts[k].input;
      }
      h.offloaded_activations += facts[k].offloaded;
    }
  }
  // A user input without the batch (Value::shared: a matrix or mask every sample uses) is one host tensor,
  // which every CPU device of the process uses as it is (the engine hands each the same tensor). The peak of
  // a device whose stage starts the graph holds it whole (it is part of the range's input), the process
  // once. (x @ w with a shared 4 MiB w, two replicas on cpu:0 + cpu:1: 8.16 MiB predicted against 4.23
  // measured.) In inference a later stage that reads it holds it too (alive from the step's start to its
  // last reader); in training a later stage's figure does not count the graph's inputs, so it is left as it
  // is. Not modelled: a device whose peak comes where the input is not alive holds it in the caller's tensor
  // all the same. Stages that run in turn hold it at once only within a stage.
  std::vector<Bytes> counted_again(hosts.size(), Bytes(0));      // [holder] by the figures of several stages
  std::vector<Bytes> counted_within(hosts.size(), Bytes(0));     // [holder] by several devices of a stage
  std::vector<std::vector<ValueId>> shared_first(hosts.size());  // [holder] those the first stage holds
  for (ValueId input : graph.inputs()) {
    const Value& v = graph.value(input);
    if (!v.shared) continue;
    std::vector<int> stages_holding(hosts.size(), 0);
    for (size_t s = 0, k = 0; s < plan.stages.size(); ++s) {
      const Stage& st = plan.stages[s];
      const bool holds = st.first == 0 ||
                         (!training && std::any_of(v.users.begin(), v.users.end(),
                                                   [&](NodeId u) { return u >= st.first && u <= st.last; }));
      std::vector<int> devices(hosts.size(), 0);  // [holder] the CPU devices of stage s that hold it
      for (size_t i = 0; i < holders.holder_at[s].size(); ++i, ++k) {
        const int d = model.device_index(sim.prediction.devices[k].device);
        if (holds && !model.can_offload(d)) ++devices[holders.holder_of_prediction[k]];
      }
      for (size_t h = 0; h < hosts.size(); ++h) {
        if (devices[h] == 0) continue;
        stage_working[s][h] -= v.bytes() * static_cast<double>(devices[h] - 1);
        counted_within[h] += v.bytes() * static_cast<double>(devices[h] - 1);
        if (stages_holding[h]++ > 0) counted_again[h] += v.bytes();
        if (st.first == 0) shared_first[h].push_back(input);
      }
    }
  }
  // A stage's figure holds what is alive while its nodes run as in a run of the whole graph on one device
  // (StageModel::live_peak), where the graph's inputs die at their last reader; the caller keeps the step's
  // inputs all step, so a stage that runs after those readers are done holds beside its figure the inputs
  // that the first stage's figure counted. (The zoo's 64-256-256-10 MLP, 32 samples, 2 stages on cpu:0 +
  // cpu:1: 64 KiB working each; 72-73 KiB measured beyond the weights, 128 KiB predicted when the stages were
  // added, 72 KiB now.)
  const std::vector<int64_t> input_rows = input_rows_counted(plan, model, holders);
  const double batch = static_cast<double>(model.graph_batch());
  for (size_t k = 0; k < hosts.size(); ++k) {
    if (!stages_in_turn && every_over_time[k] && !over_time[k].empty()) {
      hosts[k].cpu_working = most_at_once(over_time[k]) - counted_within[k] - counted_again[k];
      continue;
    }
    if (!stages_in_turn) {
      for (const std::vector<Bytes>& w : stage_working) hosts[k].cpu_working += w[k];
      hosts[k].cpu_working -= counted_again[k];
      continue;
    }
    // Training: what the stages before s keep for their backwards, and the inputs of the stages up to s,
    // each also among its producer's activations.
    Bytes earlier_kept(0), received(0);
    bool one_storage = true;  // the stages up to s run on CPU devices of this holder alone
    for (size_t s = 0; s < plan.stages.size(); ++s) {
      if (training) {
        // While stage s runs (its forward, then its backward), each earlier stage keeps the microbatch's
        // activations for its own backward, and the later ones hold only their gradients (model state). A
        // tensor one stage hands another is in both stages' figures, the receiver's (its input) and the
        // producer's (a result it sent): one storage when both run here on CPU devices (otherwise the
        // receiver has a copy, or its producer is not here), so it is counted once then. The first stage's
        // shared inputs, which its activations leave out, stay alive in the caller's batch. A stage's
        // backward peak holds the gradients returned to it (StageModel's returned gradients), its forward's
        // does not.
        received += stage_input[s][k];
        one_storage = one_storage && all_here[s][k];
        Bytes beside = std::max(Bytes(0), earlier_kept - (one_storage ? received : Bytes(0)));
        if (s > 0) {
          for (ValueId input : shared_first[k]) beside += graph.value(input).bytes();
        }
        hosts[k].cpu_working = std::max(hosts[k].cpu_working, stage_working[s][k] + beside);
        earlier_kept += stage_kept[s][k];
        continue;
      }
      Bytes kept(0);  // inputs the first stage counted whose last reader runs before stage s
      for (ValueId input : graph.inputs()) {
        const Value& v = graph.value(input);
        if (s == 0 || v.users.empty() ||
            *std::max_element(v.users.begin(), v.users.end()) >= plan.stages[s].first)
          continue;
        if (v.shared) {
          const std::vector<ValueId>& held = shared_first[k];
          if (std::find(held.begin(), held.end(), input) != held.end()) kept += v.bytes();
        } else {
          kept += v.bytes() / batch * static_cast<double>(input_rows[k]);
        }
      }
      hosts[k].cpu_working = std::max(hosts[k].cpu_working, stage_working[s][k] + kept);
    }
  }
  if (timeline_working) {
    for (auto& h : hosts) {
      const auto it = cpu_working->find(h.node);
      if (it != cpu_working->end()) h.cpu_working = it->second;
    }
  }
}

// The step's batch: the caller makes the whole global batch's inputs and, training, the loss's targets
// (every process of `partita launch` the same ones, from the same seed, its devices then taking their rows)
// and keeps them all step. A CPU device whose stage starts the graph counts its rows of one microbatch of
// the inputs in its figure (a view of them; a tensor group's devices the same rows of their replica), one
// whose stage ends it its rows of the targets (StageModel's loss); the rest of the batch is its holder's.
// (CNN 8x3x32x32, a launched 2-way data plan: each rank held 55.7 KiB over the prediction with 1
// microbatch and 92.1 KiB with 4: the 48 and 84 KiB of inputs beyond its microbatch's rows, and 8 KiB not
// found. Targets: a 64-to-4096 MLP on 256 samples trained with MSE, 4 MiB of targets, one device and 4
// microbatches: 2.0 MiB under the measured peak without the 3 MiB beyond the microbatch's rows, 1.0 MiB
// over with them, as with cross-entropy's 8 KiB of targets; a launched pipeline's first rank, which counts
// no targets: 4.19 MiB measured, 0.20 MiB predicted without them.) Branch plans are left as they were:
// their stages read the whole batch.
void add_step_batch(const Plan& plan, const Graph& graph, const StageModel& model, Holders& holders) {
  if (plan.branch_layout() || plan.stages.empty()) return;
  const double batch = static_cast<double>(model.graph_batch());
  Bytes inputs_per_sample(0);
  for (ValueId input : graph.inputs()) {
    const Value& v = graph.value(input);
    if (!v.shared) inputs_per_sample += v.bytes() / batch;
  }
  const Bytes targets_per_sample =
      model.training() ? loss_target_bytes(graph, model.options().loss) / batch : Bytes(0);
  const std::vector<int64_t> input_rows = input_rows_counted(plan, model, holders);
  const std::vector<int64_t> target_rows = rows_counted(plan, model, holders, plan.stages.size() - 1);
  const auto beyond = [&](int64_t counted) {
    return static_cast<double>(std::max<int64_t>(0, plan.global_batch - counted));
  };
  for (size_t k = 0; k < holders.hosts.size(); ++k) {
    holders.hosts[k].step_batch =
        inputs_per_sample * beyond(input_rows[k]) + targets_per_sample * beyond(target_rows[k]);
  }
}

// CPU devices share the host's parameters, so a stage's gradients accumulate there: the first gradient of
// a parameter in a step becomes its .grad (the engine sets them to none), every later one (another replica,
// a later microbatch) is made afresh by backward and then added in. While backward passes the largest
// weight, each replica adding holds one such copy of it (resnet18 8x3x112x112, two replicas on cpu:0 +
// cpu:1: 9 MiB measured beyond the devices' working memory). The stages of a pipeline do not backward
// through their largest weights at once: the largest stage figure counts. A device's backwards after its
// first of the step hold their fresh copies in its own figure (StageModel's and TensorModel's
// backward_peak, at the node that makes each), so only the replicas of a one-microbatch step add them
// here: those after the first (which one that is, is not known) add their largest weight's.
// When a CPU replica's peak is in its first backward of the step, it leaves out the gradients that backward
// has not made yet (StageModel::backward_peak), but the replicas make the same host gradients: only one
// replica's figure (the least) may be left out, the others' are added back.
// A CPU tensor group (r replicas of t devices) trains the host's parameters too, but only each replica's
// first device makes the host gradients of the replicated ones; the others make their own (engine_tensor:
// a detached leaf each), and every device the gradients of its parts of the split ones, which go into the
// host's only once the step's backward is over. Against the host's one set of gradients less each device's
// gradients not made yet (TensorModel::backward_peak) that is r (t-1) replicated + (r-1) split bytes more,
// and (r-1) times the replicated gradients not made yet (r first devices, one host copy).
// A one-stage plan's processes of `partita launch` share nothing: each device's gradients are its
// process's own (its model state), and only its later microbatches make fresh copies (in its figure).
void add_gradient_copies(const Plan& plan, const Graph& graph, const StageModel& model,
                         const TensorModel* tensor, const std::vector<DeviceHostFacts>& facts,
                         const std::vector<std::vector<int>>& stages_of, Holders& holders) {
  if (!model.training() || plan.branch_layout()) return;
  if (plan.processes == ProcessLayout::kLaunch && plan.stages.size() == 1) return;
  std::vector<HostPrediction>& hosts = holders.hosts;
  // [stage] the largest trainable parameter it reads.
  std::vector<Bytes> largest_read(plan.stages.size(), Bytes(0));
  for (size_t i = 0; i < graph.parameters().size(); ++i) {
    const Parameter& param = graph.parameters()[i];
    if (!param.requires_grad) continue;
    for (int s : stages_of[i]) {
      Bytes& largest = largest_read[static_cast<size_t>(s)];
      largest = std::max(largest, graph.value(param.value).bytes());
    }
  }
  std::vector<Bytes> adding(hosts.size(), Bytes(0)), standing(hosts.size(), Bytes(0));
  size_t first_prediction = 0;  // the index in sim.prediction.devices of stage s's first device
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    const Stage& st = plan.stages[s];
    const DeviceGroup& g = plan.groups[static_cast<size_t>(st.group)];
    const size_t stage_predictions = first_prediction;
    first_prediction += g.devices.size();
    if (!all_cpu(g, model)) continue;
    const bool tp = g.parallelism == GroupParallelism::kTensor;
    PARTITA_ASSERT(!tp || tensor != nullptr, "a plan with a tensor-parallel group needs its TensorModel");
    const int r = g.replicas(), t = tp ? g.tensor_degree() : 1;
    const size_t k = holders.holder_at[s][0];
    if (plan.microbatches == 1) adding[k] = std::max(adding[k], largest_read[s] * static_cast<double>(r - 1));
    if (tp) {
      const Bytes replicated = tensor->replicated_trainable_bytes(st.first, st.last);
      const Bytes split = model.trainable_bytes(st.first, st.last) - replicated;
      const Bytes unmade = facts[stage_predictions].unmade_replicated;
      standing[k] +=
          replicated * static_cast<double>(r * (t - 1)) + (split + unmade) * static_cast<double>(r - 1);
      continue;
    }
    Bytes unmade_sum(0), unmade_least(0);
    for (size_t i = 0; i < g.devices.size(); ++i) {
      const Bytes unmade = facts[stage_predictions + i].unmade_gradients;
      unmade_sum += unmade;
      unmade_least = i == 0 ? unmade : std::min(unmade_least, unmade);
    }
    hosts[k].cpu_working += unmade_sum - unmade_least;
  }
  for (size_t k = 0; k < hosts.size(); ++k) hosts[k].cpu_working += adding[k] + standing[k];
}

// Inference: the step's outputs put together on the host of the last stage (each process of a one-stage
// launched plan puts its own share's together).
void add_gathered_outputs(const Plan& plan, const Graph& graph, const StageModel& model, Holders& holders) {
  if (model.training() || plan.branch_layout() || plan.stages.empty()) return;
  const DeviceGroup& last = plan.groups[static_cast<size_t>(plan.stages.back().group)];
  Bytes outputs(0);
  for (ValueId id : graph.outputs()) outputs += graph.value(id).bytes();
  // The graph is sized for options.graph_batch samples; the step's outputs are for the plan's batch.
  const auto gathered = [&](int samples) {
    return Bytes(
        static_cast<int64_t>(2.0 * static_cast<double>(outputs.value()) * samples / model.graph_batch()));
  };
  std::vector<HostPrediction>& hosts = holders.hosts;
  if (plan.processes == ProcessLayout::kLaunch && plan.stages.size() == 1) {
    for (size_t i = 0; i < last.devices.size(); ++i) {
      if (plan.microbatches > 1 || model.can_offload(model.device_index(last.devices[i])))
        hosts[holders.holder_at.back()[i]].gathered_outputs =
            gathered(last.batch_shares[i] * plan.microbatches);
    }
  } else if (last.devices.size() * static_cast<size_t>(plan.microbatches) > 1 || !all_cpu(last, model)) {
    hosts[holders.holder_at.back()[0]].gathered_outputs = gathered(plan.global_batch);
  }
}

// The processes of one machine add up (launched): one entry per machine, its processes' peaks listed.
std::vector<HostPrediction> per_machine(const Holders& holders) {
  std::vector<HostPrediction> machines;
  std::vector<size_t> order(holders.hosts.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return holders.rank_of[a] < holders.rank_of[b]; });
  for (size_t k : order) {
    const HostPrediction& p = holders.hosts[k];
    auto m = std::find_if(machines.begin(), machines.end(),
                          [&](const HostPrediction& h) { return h.node == p.node; });
    if (m == machines.end()) {
      machines.push_back(HostPrediction{p.node});
      m = machines.end() - 1;
      m->capacity = p.capacity;
    }
    m->peak_memory += p.peak_memory;
    m->model_state += p.model_state;
    m->step_batch += p.step_batch;
    m->cpu_working += p.cpu_working;
    m->offloaded_activations += p.offloaded_activations;
    m->gathered_outputs += p.gathered_outputs;
    m->update_working += p.update_working;
    m->processes.push_back(ProcessPeak{holders.rank_of[k], p.peak_memory});
  }
  return machines;
}

}  // namespace

void predict_hosts(const Plan& plan, const Graph& graph, const StageModel& model, const TensorModel* tensor,
                   const std::vector<DeviceHostFacts>& facts, Simulation& sim,
                   const std::map<std::string, Bytes>* cpu_working) {
  const bool launched = plan.processes == ProcessLayout::kLaunch;
  PARTITA_ASSERT(!launched || !update_split(plan, graph, model.cluster()),
                 "a launched plan's update is not split");
  Holders holders = find_holders(plan, model, launched);
  PARTITA_ASSERT(facts.size() == sim.prediction.devices.size(), "one set of facts per device prediction");
  PARTITA_ASSERT(holders.holder_of_prediction.size() == sim.prediction.devices.size(),
                 "one prediction per device of a stage");
  // [parameter] the stages that read it (Plan::parameter_stages).
  const std::vector<std::vector<int>> stages_of = plan.parameter_stages(graph);
  add_model_state(plan, graph, model, tensor, stages_of, holders);
  add_working_memory(plan, graph, model, facts, sim, cpu_working, holders);
  add_step_batch(plan, graph, model, holders);
  add_gradient_copies(plan, graph, model, tensor, facts, stages_of, holders);
  add_gathered_outputs(plan, graph, model, holders);
  for (auto& h : holders.hosts) {
    h.peak_memory = h.model_state + h.step_batch + h.offloaded_activations +
                    std::max({h.cpu_working, h.gathered_outputs, h.update_working});
  }
  std::vector<HostPrediction> hosts = launched ? per_machine(holders) : std::move(holders.hosts);
  for (const auto& h : hosts) {
    if (h.capacity.value() > 0 && h.peak_memory > h.capacity && sim.fits_host_memory) {
      sim.fits_host_memory = false;
      sim.host_memory_note =
          "the host memory of machine " + h.node + " would need " + format_bytes(h.peak_memory) +
          " but it has " + format_bytes(h.capacity) + " (" +
          (h.processes.empty() ? "" : std::to_string(h.processes.size()) + " processes: ") + parts(h) + ")";
    }
  }
  sim.prediction.hosts = std::move(hosts);
}

}  // namespace partita::detail

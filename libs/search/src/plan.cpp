#include "partita/search/plan.h"

#include <algorithm>
#include <numeric>
#include <set>
#include <sstream>

#include "partita/core/error.h"
#include "partita/core/format.h"

namespace partita {

namespace {

template <typename E, size_t N>
E parse_enum(std::string_view name, const E (&all)[N], std::string_view (*to_name)(E), const char* what) {
  std::string accepted;
  for (E e : all) {
    if (to_name(e) == name) return e;
    accepted += (accepted.empty() ? "" : ", ") + std::string(to_name(e));
  }
  PARTITA_FAIL("unknown ", what, " '", name, "': use one of ", accepted);
}

}  // namespace

std::string_view schedule_name(Schedule s) { return s == Schedule::kGPipe ? "gpipe" : "1f1b"; }
std::string_view checkpointing_name(Checkpointing c) { return c == Checkpointing::kNone ? "none" : "full"; }
std::string_view offload_name(Offload o) {
  switch (o) {
    case Offload::kNone:
      return "none";
    case Offload::kOptimizerState:
      return "optimizer_state";
    case Offload::kActivations:
      return "activations";
    case Offload::kActivationsAndOptimizerState:
      return "activations+optimizer_state";
  }
  return "none";
}
bool offloads_optimizer_state(Offload o) {
  return o == Offload::kOptimizerState || o == Offload::kActivationsAndOptimizerState;
}
bool offloads_activations(Offload o) {
  return o == Offload::kActivations || o == Offload::kActivationsAndOptimizerState;
}
std::string_view group_parallelism_name(GroupParallelism g) {
  return g == GroupParallelism::kData ? "data" : "tensor";
}

Schedule parse_schedule(std::string_view name) {
  static const Schedule kAll[] = {Schedule::kGPipe, Schedule::kOneFOneB};
  return parse_enum(name, kAll, schedule_name, "schedule");
}
Checkpointing parse_checkpointing(std::string_view name) {
  static const Checkpointing kAll[] = {Checkpointing::kNone, Checkpointing::kFull};
  return parse_enum(name, kAll, checkpointing_name, "checkpointing");
}
Offload parse_offload(std::string_view name) {
  static const Offload kAll[] = {Offload::kNone, Offload::kOptimizerState, Offload::kActivations,
                                 Offload::kActivationsAndOptimizerState};
  return parse_enum(name, kAll, offload_name, "offload");
}
GroupParallelism parse_group_parallelism(std::string_view name) {
  static const GroupParallelism kAll[] = {GroupParallelism::kData, GroupParallelism::kTensor};
  return parse_enum(name, kAll, group_parallelism_name, "group parallelism");
}

std::vector<std::string> Plan::used_devices() const {
  std::vector<std::string> out;
  for (const auto& g : groups) out.insert(out.end(), g.devices.begin(), g.devices.end());
  return out;
}

std::vector<std::vector<std::string>> Plan::stage_devices() const {
  std::vector<std::vector<std::string>> out;
  for (const Stage& st : stages) out.push_back(groups.at(static_cast<size_t>(st.group)).devices);
  return out;
}

int DeviceGroup::tensor_degree() const {
  if (parallelism == GroupParallelism::kData) return 1;
  return tensor_size > 0 ? tensor_size : static_cast<int>(devices.size());
}

int DeviceGroup::replicas() const { return static_cast<int>(devices.size()) / tensor_degree(); }

bool Plan::splits_batch() const {
  if (microbatches > 1) return true;
  return std::any_of(groups.begin(), groups.end(), [](const DeviceGroup& g) { return g.replicas() > 1; });
}

int Plan::smallest_share() const {
  int least = microbatch_size();
  for (const DeviceGroup& g : groups) {
    for (int share : g.batch_shares) least = std::min(least, share);
  }
  return least;
}

std::vector<std::vector<int>> Plan::parameter_stages(const Graph& target) const {
  std::vector<int> parameter_of(static_cast<size_t>(target.num_values()), -1);
  for (size_t i = 0; i < target.parameters().size(); ++i)
    parameter_of[static_cast<size_t>(target.parameters()[i].value)] = static_cast<int>(i);
  std::vector<std::vector<int>> out(target.parameters().size());
  const auto visit = [&](int st, NodeId n) {
    for (ValueId v : target.node(n).inputs) {
      const int p = parameter_of[static_cast<size_t>(v)];
      if (p >= 0 && (out[static_cast<size_t>(p)].empty() || out[static_cast<size_t>(p)].back() != st))
        out[static_cast<size_t>(p)].push_back(st);
    }
  };
  for (int st = 0; st < static_cast<int>(stages.size()); ++st) {
    const Stage& stage = stages[static_cast<size_t>(st)];
    if (stage.explicit_nodes()) {
      for (NodeId n : stage.nodes) visit(st, n);
    } else {
      for (NodeId n = stage.first; n <= stage.last; ++n) visit(st, n);
    }
  }
  return out;
}

std::string Plan::to_string() const {
  std::ostringstream os;
  os << "plan: " << strategy_name(strategy) << ", " << mode_name(mode) << ", batch " << global_batch << " in "
     << microbatches << " microbatch(es) of " << microbatch_size() << ", schedule "
     << schedule_name(schedule);
  if (mode == Mode::kTraining) os << ", optimizer " << optimizer_name(optimizer);
  if (processes == ProcessLayout::kLaunch)
    os << ", one process per " << (stages.size() > 1 ? "stage" : "device");
  os << "\n";
  for (size_t s = 0; s < stages.size(); ++s) {
    const Stage& st = stages[s];
    const DeviceGroup& g = groups[static_cast<size_t>(st.group)];
    if (st.explicit_nodes()) {
      os << "  stage " << s << ": " << st.nodes.size() << " nodes (" << st.first << ".." << st.last
         << ", not contiguous) on " << group_parallelism_name(g.parallelism) << " group [";
    } else {
      os << "  stage " << s << ": nodes " << st.first << ".." << st.last << " on "
         << group_parallelism_name(g.parallelism) << " group [";
    }
    for (size_t d = 0; d < g.devices.size(); ++d) {
      os << (d ? ", " : "") << g.devices[d] << " x" << g.batch_shares[d];
    }
    os << "]";
    if (g.replicas() > 1 && g.tensor_degree() > 1)
      os << " as " << g.replicas() << " replicas of " << g.tensor_degree() << "-way tensor parallelism";
    if (st.checkpointing != Checkpointing::kNone)
      os << ", checkpointing " << checkpointing_name(st.checkpointing);
    if (st.offload != Offload::kNone) os << ", offload " << offload_name(st.offload);
    os << "\n";
  }
  for (const auto& u : unused_devices) os << "  unused " << u.device << ": " << u.reason << "\n";
  os << "  predicted: step " << format_seconds(prediction.step_time) << ", " << prediction.samples_per_second
     << " samples/s, " << prediction.energy.value() << " J/step\n";
  for (const auto& d : prediction.devices) {
    os << "    " << d.device << ": peak " << format_bytes(d.peak_memory) << ", busy "
       << format_seconds(d.busy) << "\n";
  }
  for (const auto& h : prediction.hosts) {
    os << "    host memory of " << h.node << ": " << format_bytes(h.peak_memory);
    if (h.capacity.value() > 0) os << " of " << format_bytes(h.capacity);
    os << " (weights and state " << format_bytes(h.model_state) << ")";
    if (!h.processes.empty()) os << " in " << h.processes.size() << " processes: " << process_peaks_text(h);
    os << "\n";
  }
  return os.str();
}

std::string process_peaks_text(const HostPrediction& host) {
  std::string out;
  for (const ProcessPeak& p : host.processes)
    out +=
        (out.empty() ? "" : " + ") + ("rank " + std::to_string(p.rank) + " " + format_bytes(p.peak_memory));
  return out;
}

void Plan::check_ranges(const Graph& target) const {
  NodeId next = 0;
  for (const Stage& st : stages) {
    PARTITA_CHECK(
        !st.explicit_nodes(), "plan: stage ", &st - stages.data(),
        " lists nodes but the first stage does not; a plan uses node ranges or node lists, not both");
    PARTITA_CHECK(st.first == next && st.last >= st.first, "plan: stage [", st.first, ", ", st.last,
                  "] does not continue the node order at ", next);
    next = st.last + 1;
    PARTITA_CHECK(st.group >= 0 && st.group < static_cast<int>(groups.size()), "plan: stage group ", st.group,
                  " out of range");
  }
  PARTITA_CHECK(next == target.num_nodes(), "plan stages end at node ", next - 1, " but the graph has ",
                target.num_nodes(), " nodes");
}

void Plan::check_node_lists(const Graph& target) const {
  const int n = target.num_nodes();
  std::vector<int> where(static_cast<size_t>(n), -1);
  for (size_t s = 0; s < stages.size(); ++s) {
    const Stage& st = stages[s];
    PARTITA_CHECK(
        st.explicit_nodes(), "plan: stage ", s,
        " has no node list but the first stage has one; a plan uses node ranges or node lists, not both");
    PARTITA_CHECK(st.group >= 0 && st.group < static_cast<int>(groups.size()), "plan: stage group ", st.group,
                  " out of range");
    for (NodeId id : st.nodes) {
      PARTITA_CHECK(id >= 0 && id < n, "plan: stage ", s, " lists node ", id, " but the graph has ", n,
                    " nodes");
      PARTITA_CHECK(where[static_cast<size_t>(id)] < 0, "plan: node ", id, " is listed in stages ",
                    where[static_cast<size_t>(id)], " and ", s);
      where[static_cast<size_t>(id)] = static_cast<int>(s);
    }
  }
  for (int i = 0; i < n; ++i) {
    PARTITA_CHECK(where[static_cast<size_t>(i)] >= 0, "plan: node ", i, " is in no stage's node list");
  }
  // Each list must respect the data dependencies among its own nodes (a device runs its list in order).
  for (const Stage& st : stages) {
    std::vector<int> pos(static_cast<size_t>(n), -1);
    for (size_t k = 0; k < st.nodes.size(); ++k) pos[static_cast<size_t>(st.nodes[k])] = static_cast<int>(k);
    for (size_t k = 0; k < st.nodes.size(); ++k) {
      for (ValueId v : target.node(st.nodes[k]).inputs) {
        const NodeId p = target.value(v).producer;
        PARTITA_CHECK(p == kNoNode || pos[static_cast<size_t>(p)] < 0 ||
                          pos[static_cast<size_t>(p)] < static_cast<int>(k),
                      "plan: node ", st.nodes[k], " runs before node ", p,
                      " that it depends on; list nodes in a "
                      "topological order");
      }
    }
  }
}

void Plan::check_against(const Graph& target) const {
  const GraphIdentity id = graph_identity(target);
  PARTITA_CHECK(id == this->graph, "plan was made for a graph with ", this->graph.num_nodes,
                " nodes (op hash ", this->graph.op_hash, ") but this graph has ", id.num_nodes,
                " nodes (op hash ", id.op_hash, "); plan again for this model");
  PARTITA_CHECK(microbatches >= 1 && global_batch % microbatches == 0, "plan: global batch ", global_batch,
                " is not divisible into ", microbatches, " microbatches");
  PARTITA_CHECK(!stages.empty(), "plan has no stages");
  std::set<std::string> seen;
  if (stages.front().explicit_nodes()) {
    check_node_lists(target);
  } else {
    check_ranges(target);
  }
  for (size_t s = 0; s < stages.size(); ++s) {
    PARTITA_CHECK(stages[s].checkpointing == Checkpointing::kNone || !offloads_activations(stages[s].offload),
                  "plan: stage ", s, " combines ", checkpointing_name(stages[s].checkpointing),
                  " checkpointing with ", offload_name(stages[s].offload),
                  " offload; checkpointing already drops the activations: choose one");
  }
  for (const auto& g : groups) {
    PARTITA_CHECK(!g.devices.empty() && g.devices.size() == g.batch_shares.size(),
                  "plan: a device group needs one batch share per device");
    const int t = g.tensor_degree();
    PARTITA_CHECK(t >= 1 && g.devices.size() % static_cast<size_t>(t) == 0, "plan: the group starting at ",
                  g.devices[0], " has ", g.devices.size(), " devices, not a multiple of its tensor_size ", t);
    for (size_t d = 0; d < g.devices.size(); ++d) {
      const size_t lead = d - d % static_cast<size_t>(t);
      PARTITA_CHECK(g.batch_shares[d] == g.batch_shares[lead], "plan: ", g.devices[d], " has batch share ",
                    g.batch_shares[d], " but its tensor-parallel group shares ", g.batch_shares[lead],
                    " samples: every device of the group runs the same samples");
    }
    const int sum = std::accumulate(g.batch_shares.begin(), g.batch_shares.end(), 0);
    const int want = microbatch_size() * t;
    PARTITA_CHECK(sum == want, "plan: batch shares of group starting at ", g.devices[0], " sum to ", sum,
                  " but the microbatch needs ", want);
    for (const auto& d : g.devices)
      PARTITA_CHECK(seen.insert(d).second, "plan: device ", d, " is in two groups");
  }
}

std::vector<int> stages_on_device_lists(const Plan& plan,
                                        const std::vector<std::vector<std::string>>& device_lists) {
  std::vector<int> out;
  std::vector<bool> taken(device_lists.size(), false);
  for (const std::vector<std::string>& devices : plan.stage_devices()) {
    const auto at = std::find_if(device_lists.begin(), device_lists.end(), [&](const auto& list) {
      return !taken[static_cast<size_t>(&list - device_lists.data())] && list == devices;
    });
    const int index = at == device_lists.end() ? -1 : static_cast<int>(at - device_lists.begin());
    if (index >= 0) taken[static_cast<size_t>(index)] = true;
    out.push_back(index);
  }
  return out;
}

std::optional<Plan> on_the_same_devices(const Plan& candidate, const Plan& current) {
  if (candidate.stages.size() != current.stages.size() || current.stages.empty() ||
      candidate.has_tensor_groups() || current.has_tensor_groups())
    return std::nullopt;
  if (candidate.branch_layout() != current.branch_layout()) return std::nullopt;
  if (current.stages.size() >
      1) {  // a pipeline or a branch plan: each stage on a distinct current stage's devices
    const std::vector<int> on = stages_on_device_lists(candidate, current.stage_devices());
    if (std::find(on.begin(), on.end(), -1) != on.end()) return std::nullopt;
    return candidate;
  }
  // Data parallel: the same devices, put back in the current order with their shares.
  const DeviceGroup& now = current.groups.at(static_cast<size_t>(current.stages[0].group));
  const DeviceGroup& g = candidate.groups.at(static_cast<size_t>(candidate.stages[0].group));
  if (g.devices.size() != now.devices.size()) return std::nullopt;
  DeviceGroup ordered = g;
  for (size_t d = 0; d < now.devices.size(); ++d) {
    const auto at = std::find(g.devices.begin(), g.devices.end(), now.devices[d]);
    if (at == g.devices.end()) return std::nullopt;
    ordered.devices[d] = now.devices[d];
    ordered.batch_shares[d] = g.batch_shares.at(static_cast<size_t>(at - g.devices.begin()));
  }
  Plan out = candidate;
  out.groups.at(static_cast<size_t>(out.stages[0].group)) = ordered;
  return out;
}

}  // namespace partita

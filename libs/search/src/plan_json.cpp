#include "partita/search/plan_json.h"

#include "partita/core/error.h"

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace partita {

namespace {

const Json& field(const Json& j, const char* key) {
  PARTITA_CHECK(j.is_object() && j.contains(key), "plan JSON: missing field '", key, "'");
  return j.at(key);
}

template <typename T>
constexpr bool kIsWholeNumber = std::is_integral_v<T> && !std::is_same_v<T, bool>;

template <typename T>
struct VectorElement {
  using type = void;
};
template <typename U>
struct VectorElement<std::vector<U>> {
  using type = U;
};

// nlohmann's get<int>() truncates 2.5 to 2 and wraps 1e10: a plan field that counts something must hold a
// whole number that fits, or the plan is refused naming the field (a hand-edited "microbatches": 2.5 was
// read as 2 and then refused for its batch shares, which hid the cause).
template <typename T>
T whole_number(const Json& v, const char* key) {
  bool fits = false;
  if (v.is_number_unsigned()) {
    fits = std::in_range<T>(v.get<uint64_t>());
  } else if (v.is_number_integer()) {
    fits = std::in_range<T>(v.get<int64_t>());
  }
  PARTITA_CHECK(fits, "plan JSON: field '", key, "' must be a whole number",
                std::is_signed_v<T> ? "" : " of 0 or more", " that fits in ", sizeof(T) * 8, " bits, got ",
                v.dump());
  return v.get<T>();
}

template <typename T>
T get(const Json& j, const char* key) {
  const Json& v = field(j, key);
  using Element = typename VectorElement<T>::type;
  if constexpr (kIsWholeNumber<T>) {
    return whole_number<T>(v, key);
  } else if constexpr (kIsWholeNumber<Element>) {
    PARTITA_CHECK(v.is_array(), "plan JSON: field '", key, "' must be a list of whole numbers, got ",
                  v.dump());
    T out;
    for (const Json& e : v) out.push_back(whole_number<Element>(e, key));
    return out;
  } else {
    try {
      return v.get<T>();
    } catch (const nlohmann::json::exception& e) {
      PARTITA_FAIL("plan JSON: field '", key, "' has the wrong type: ", e.what());
    }
  }
}

Json group_to_json(const DeviceGroup& g) {
  Json j;
  j["devices"] = g.devices;
  j["batch_shares"] = g.batch_shares;
  j["parallelism"] = group_parallelism_name(g.parallelism);
  if (g.parallelism == GroupParallelism::kTensor && g.replicas() > 1) j["tensor_size"] = g.tensor_degree();
  return j;
}

Json stage_to_json(const Stage& s) {
  Json j;
  j["first"] = s.first;
  j["last"] = s.last;
  j["group"] = s.group;
  j["checkpointing"] = checkpointing_name(s.checkpointing);
  j["offload"] = offload_name(s.offload);
  if (s.explicit_nodes()) j["nodes"] = s.nodes;
  return j;
}

Json source_to_json(const PlanSource& s) {
  Json j = Json::object();
  if (!s.model.empty()) {
    j["model"] = s.model;
    j["inputs"] = s.inputs;
  }
  if (!s.model_spec.empty()) {
    j["model_spec"] = s.model_spec;
    j["batch"] = s.batch;
  }
  if (!s.devices.empty()) j["devices"] = s.devices;
  if (!s.cluster.empty()) j["cluster"] = s.cluster;
  if (!s.cost.empty()) j["cost"] = s.cost;
  if (s.memory_limit) j["memory_limit_bytes"] = s.memory_limit->value();
  if (!s.device_slowdowns.empty()) j["device_slowdowns"] = s.device_slowdowns;
  if (!s.power_caps.empty()) j["power_caps_w"] = s.power_caps;
  return j;
}

PlanSource source_from_json(const Json& j) {
  PARTITA_CHECK(j.is_object(), "plan JSON: 'source' must be an object");
  PlanSource s;
  if (j.contains("model")) {
    s.model = get<std::string>(j, "model");
    s.inputs = get<std::vector<std::string>>(j, "inputs");
  }
  if (j.contains("model_spec")) {
    s.model_spec = get<std::string>(j, "model_spec");
    s.batch = get<int>(j, "batch");
  }
  if (j.contains("devices")) s.devices = get<std::string>(j, "devices");
  if (j.contains("cluster")) s.cluster = get<std::string>(j, "cluster");
  if (j.contains("cost")) s.cost = get<std::string>(j, "cost");
  if (j.contains("memory_limit_bytes")) s.memory_limit = Bytes(get<int64_t>(j, "memory_limit_bytes"));
  if (j.contains("device_slowdowns")) {
    s.device_slowdowns = get<std::map<std::string, double>>(j, "device_slowdowns");
    for (const auto& [device, factor] : s.device_slowdowns) {
      PARTITA_CHECK(factor > 0, "plan JSON: device_slowdowns of '", device, "' must be positive, got ",
                    factor);
    }
  }
  if (j.contains("power_caps_w")) {
    s.power_caps = get<std::map<std::string, double>>(j, "power_caps_w");
    for (const auto& [device, watts] : s.power_caps) {
      PARTITA_CHECK(watts > 0, "plan JSON: power_caps_w of '", device, "' must be positive, got ", watts);
    }
  }
  return s;
}

Json prediction_to_json(const Prediction& p) {
  Json j;
  j["step_time_s"] = p.step_time.value();
  j["samples_per_second"] = p.samples_per_second;
  j["energy_j"] = p.energy.value();
  Json devs = Json::array();
  for (const auto& d : p.devices) {
    devs.push_back(Json{{"device", d.device},
                        {"peak_memory_bytes", d.peak_memory.value()},
                        {"busy_s", d.busy.value()},
                        {"energy_j", d.energy.value()},
                        {"model_state_bytes", d.model_state.value()}});
  }
  j["devices"] = devs;
  Json hosts = Json::array();
  for (const auto& h : p.hosts) {
    hosts.push_back(Json{{"node", h.node},
                         {"peak_memory_bytes", h.peak_memory.value()},
                         {"model_state_bytes", h.model_state.value()},
                         {"step_batch_bytes", h.step_batch.value()},
                         {"cpu_working_bytes", h.cpu_working.value()},
                         {"offloaded_activation_bytes", h.offloaded_activations.value()},
                         {"gathered_output_bytes", h.gathered_outputs.value()},
                         {"update_working_bytes", h.update_working.value()},
                         {"capacity_bytes", h.capacity.value()}});
    if (!h.processes.empty()) {
      Json processes = Json::array();
      for (const ProcessPeak& pp : h.processes)
        processes.push_back(Json{{"rank", pp.rank}, {"peak_memory_bytes", pp.peak_memory.value()}});
      hosts.back()["processes"] = processes;
    }
  }
  j["hosts"] = hosts;
  return j;
}

Prediction prediction_from_json(const Json& j) {
  Prediction p;
  p.step_time = Seconds(get<double>(j, "step_time_s"));
  p.samples_per_second = get<double>(j, "samples_per_second");
  p.energy = Joules(get<double>(j, "energy_j"));
  for (const auto& d : field(j, "devices")) {
    DevicePrediction dp{get<std::string>(d, "device"), Bytes(get<int64_t>(d, "peak_memory_bytes")),
                        Seconds(get<double>(d, "busy_s")), Joules(get<double>(d, "energy_j"))};
    if (d.contains("model_state_bytes")) dp.model_state = Bytes(get<int64_t>(d, "model_state_bytes"));
    p.devices.push_back(dp);
  }
  if (j.contains("hosts")) {  // plans written before 2026-11-29 (fourth session) have none
    for (const auto& h : field(j, "hosts")) {
      HostPrediction hp;
      hp.node = get<std::string>(h, "node");
      hp.peak_memory = Bytes(get<int64_t>(h, "peak_memory_bytes"));
      hp.model_state = Bytes(get<int64_t>(h, "model_state_bytes"));
      // Plans written before 2026-12-06 have neither; those of that day (fifty-fifth session) the inputs
      // alone, under their old name.
      if (h.contains("step_batch_bytes")) hp.step_batch = Bytes(get<int64_t>(h, "step_batch_bytes"));
      if (h.contains("batch_input_bytes")) hp.step_batch = Bytes(get<int64_t>(h, "batch_input_bytes"));
      hp.cpu_working = Bytes(get<int64_t>(h, "cpu_working_bytes"));
      hp.offloaded_activations = Bytes(get<int64_t>(h, "offloaded_activation_bytes"));
      hp.gathered_outputs = Bytes(get<int64_t>(h, "gathered_output_bytes"));
      if (h.contains("update_working_bytes"))  // plans written before 2026-11-30 (sixteenth session)
        hp.update_working = Bytes(get<int64_t>(h, "update_working_bytes"));
      hp.capacity = Bytes(get<int64_t>(h, "capacity_bytes"));
      if (h.contains("processes")) {  // launched plans written before 2026-12-06 (fifty-fourth session): none
        for (const auto& pp : field(h, "processes"))
          hp.processes.push_back(
              ProcessPeak{get<int>(pp, "rank"), Bytes(get<int64_t>(pp, "peak_memory_bytes"))});
      }
      p.hosts.push_back(hp);
    }
  }
  return p;
}

}  // namespace

Json plan_to_json(const Plan& plan) {
  Json j;
  j["format"] = "partita.plan";
  j["version"] = kPlanJsonVersion;
  j["graph"] = Json{{"num_nodes", plan.graph.num_nodes}, {"op_hash", plan.graph.op_hash}};
  j["mode"] = mode_name(plan.mode);
  j["strategy"] = strategy_name(plan.strategy);
  j["schedule"] = schedule_name(plan.schedule);
  j["optimizer"] = optimizer_name(plan.optimizer);
  j["loss"] = loss_kind_name(plan.loss);
  j["processes"] = process_layout_name(plan.processes);
  j["global_batch"] = plan.global_batch;
  j["microbatches"] = plan.microbatches;
  // Convenience copies of the prediction for scripts (the "prediction" object below is what is read back).
  j["predicted_step_ms"] = to_milliseconds(plan.prediction.step_time);
  Json peak = Json::object();
  for (const auto& d : plan.prediction.devices) peak[d.device] = d.peak_memory.value();
  j["predicted_peak_bytes"] = peak;
  j["predicted_joules"] = plan.prediction.energy.value();
  Json groups = Json::array();
  for (const auto& g : plan.groups) groups.push_back(group_to_json(g));
  j["groups"] = groups;
  Json stages = Json::array();
  for (const auto& s : plan.stages) stages.push_back(stage_to_json(s));
  j["stages"] = stages;
  Json unused = Json::array();
  for (const auto& u : plan.unused_devices)
    unused.push_back(Json{{"device", u.device}, {"reason", u.reason}});
  j["unused_devices"] = unused;
  j["prediction"] = prediction_to_json(plan.prediction);
  if (!plan.source.empty()) j["source"] = source_to_json(plan.source);
  return j;
}

Plan plan_from_json(const Json& j) {
  PARTITA_CHECK(j.is_object() && j.contains("format") && j["format"] == "partita.plan",
                "not a partita plan: the JSON needs \"format\": \"partita.plan\"");
  const int version = get<int>(j, "version");
  PARTITA_CHECK(version >= 1 && version <= kPlanJsonVersion, "plan JSON version ", version,
                " is not supported by this partita (reads 1 to ", kPlanJsonVersion, "); update partita");
  Plan p;
  const Json& g = field(j, "graph");
  p.graph = GraphIdentity{get<int>(g, "num_nodes"), get<std::string>(g, "op_hash")};
  p.mode = parse_mode(get<std::string>(j, "mode"));
  p.strategy = parse_strategy(get<std::string>(j, "strategy"));
  p.schedule = parse_schedule(get<std::string>(j, "schedule"));
  p.optimizer = parse_optimizer(get<std::string>(j, "optimizer"));
  if (j.contains("loss")) {  // plans written before 2026-12-04 have none: auto
    try {
      p.loss = parse_loss_kind(get<std::string>(j, "loss"));
    } catch (const Error& e) {
      PARTITA_FAIL("plan JSON: field 'loss': ", e.what());
    }
  }
  if (j.contains("processes")) {  // plans written before 2026-12-05 have none: one process
    try {
      p.processes = parse_process_layout(get<std::string>(j, "processes"));
    } catch (const Error& e) {
      PARTITA_FAIL("plan JSON: field 'processes': ", e.what());
    }
  }
  p.global_batch = get<int>(j, "global_batch");
  p.microbatches = get<int>(j, "microbatches");
  for (const auto& gj : field(j, "groups")) {
    DeviceGroup grp;
    grp.devices = get<std::vector<std::string>>(gj, "devices");
    grp.batch_shares = get<std::vector<int>>(gj, "batch_shares");
    grp.parallelism = parse_group_parallelism(get<std::string>(gj, "parallelism"));
    if (gj.contains("tensor_size")) {
      grp.tensor_size = get<int>(gj, "tensor_size");
      PARTITA_CHECK(grp.parallelism == GroupParallelism::kTensor && grp.tensor_size >= 1,
                    "plan JSON: tensor_size ", grp.tensor_size,
                    " needs a \"tensor\" group and a size of 1 or more");
    }
    p.groups.push_back(std::move(grp));
  }
  for (const auto& sj : field(j, "stages")) {
    Stage st;
    st.first = get<NodeId>(sj, "first");
    st.last = get<NodeId>(sj, "last");
    st.group = get<int>(sj, "group");
    st.checkpointing = parse_checkpointing(get<std::string>(sj, "checkpointing"));
    st.offload = parse_offload(get<std::string>(sj, "offload"));
    if (sj.contains("nodes")) st.nodes = get<std::vector<NodeId>>(sj, "nodes");
    p.stages.push_back(std::move(st));
  }
  for (const auto& uj : field(j, "unused_devices")) {
    p.unused_devices.push_back(UnusedDevice{get<std::string>(uj, "device"), get<std::string>(uj, "reason")});
  }
  p.prediction = prediction_from_json(field(j, "prediction"));
  if (j.contains("source")) p.source = source_from_json(j.at("source"));
  PARTITA_CHECK(p.microbatches >= 1, "plan JSON: microbatches is ", p.microbatches,
                "; it must be at least 1");
  PARTITA_CHECK(p.global_batch % p.microbatches == 0, "plan JSON: global_batch ", p.global_batch,
                " is not a multiple of microbatches ", p.microbatches);
  // Everything that reads a plan indexes its groups by the stages' group numbers.
  for (size_t s = 0; s < p.stages.size(); ++s) {
    PARTITA_CHECK(p.stages[s].group >= 0 && p.stages[s].group < static_cast<int>(p.groups.size()),
                  "plan JSON: stage ", s, " names group ", p.stages[s].group, " but the plan has ",
                  p.groups.size(), " group(s), numbered from 0");
  }
  return p;
}

}  // namespace partita

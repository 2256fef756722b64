#include "partita/search/plan_json.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "partita/core/error.h"

namespace partita {
namespace {

Plan sample_plan() {
  Plan p;
  p.graph = GraphIdentity{10, "0123456789abcdef"};
  p.mode = Mode::kTraining;
  p.strategy = StrategyKind::kHybrid;
  p.schedule = Schedule::kGPipe;
  p.optimizer = Optimizer::kAdamW;
  p.loss = LossKind::kMse;
  p.global_batch = 12;
  p.microbatches = 3;
  p.groups = {DeviceGroup{{"cuda:0", "cuda:1"}, {3, 1}, GroupParallelism::kData},
              DeviceGroup{{"cpu:0"}, {4}, GroupParallelism::kData}};
  p.stages = {Stage{0, 4, 0, Checkpointing::kNone, Offload::kActivationsAndOptimizerState},
              Stage{5, 9, 1, Checkpointing::kFull, Offload::kNone}};
  p.unused_devices = {UnusedDevice{"cuda:2", "too slow"}};
  p.prediction.step_time = Seconds(0.125);
  p.prediction.samples_per_second = 96;
  p.prediction.energy = Joules(12.5);
  p.prediction.devices = {
      DevicePrediction{"cuda:0", Bytes(1 << 30), Seconds(0.1), Joules(7), Bytes(1 << 20)}};
  p.prediction.hosts = {
      HostPrediction{.node = "node0",
                     .peak_memory = Bytes(7000),
                     .model_state = Bytes(4000),
                     .step_batch = Bytes(96),
                     .cpu_working = Bytes(2000),
                     .offloaded_activations = Bytes(1000),
                     .gathered_outputs = Bytes(500),
                     .capacity = Bytes(int64_t{64} << 30),
                     .update_working = Bytes(300),
                     .processes = {ProcessPeak{0, Bytes(4500)}, ProcessPeak{1, Bytes(2500)}}}};
  return p;
}

TEST(PlanJson, RoundTripsEveryField) {
  const Plan p = sample_plan();
  const Json j = plan_to_json(p);
  EXPECT_EQ(j["format"], "partita.plan");
  EXPECT_EQ(j["version"], kPlanJsonVersion);
  const Plan q = plan_from_json(j);
  EXPECT_EQ(plan_to_json(q).dump(), j.dump());
  EXPECT_EQ(j["stages"][0]["offload"], "activations+optimizer_state");
  EXPECT_EQ(q.stages[0].offload, Offload::kActivationsAndOptimizerState);
  EXPECT_EQ(q.stages[1].checkpointing, Checkpointing::kFull);
  EXPECT_EQ(q.groups[0].batch_shares, (std::vector<int>{3, 1}));
  EXPECT_EQ(q.prediction.devices[0].model_state, Bytes(1 << 20));
  ASSERT_EQ(q.prediction.hosts.size(), 1u);
  EXPECT_EQ(q.prediction.hosts[0].node, "node0");
  EXPECT_EQ(q.prediction.hosts[0].step_batch, Bytes(96));
  EXPECT_EQ(q.prediction.hosts[0].cpu_working, Bytes(2000));
  EXPECT_EQ(q.prediction.hosts[0].offloaded_activations, Bytes(1000));
  EXPECT_EQ(q.prediction.hosts[0].capacity, Bytes(int64_t{64} << 30));
  EXPECT_EQ(q.prediction.hosts[0].update_working, Bytes(300));
  ASSERT_EQ(q.prediction.hosts[0].processes.size(), 2u);
  EXPECT_EQ(q.prediction.hosts[0].processes[1].rank, 1);
  EXPECT_EQ(q.prediction.hosts[0].processes[1].peak_memory, Bytes(2500));
  EXPECT_EQ(j["loss"], "mse");
  EXPECT_EQ(q.loss, LossKind::kMse);
  // The step's batch was written as the inputs alone, under another name, on 2026-12-06; read as it is.
  Json old = j;
  old["prediction"]["hosts"][0].erase("step_batch_bytes");
  old["prediction"]["hosts"][0]["batch_input_bytes"] = 64;
  EXPECT_EQ(plan_from_json(old).prediction.hosts[0].step_batch, Bytes(64));
  old["prediction"]["hosts"][0].erase("batch_input_bytes");
  EXPECT_EQ(plan_from_json(old).prediction.hosts[0].step_batch, Bytes(0));
}

// The loss a plan was predicted for (plan --loss; run trains with it): plans written before it read as auto,
// an unknown one is refused naming the field.
TEST(PlanJson, ReadsTheLossOrAutoWhenAbsent) {
  Json j = plan_to_json(sample_plan());
  j.erase("loss");
  EXPECT_EQ(plan_from_json(j).loss, LossKind::kAuto);
  j["loss"] = "l1";
  try {
    plan_from_json(j);
    ADD_FAILURE() << "read an unknown loss";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("plan JSON: field 'loss': unknown loss 'l1'"), std::string::npos)
        << e.what();
  }
}

TEST(PlanJson, RoundTripsTheProcessesAndReadsOneWhenAbsent) {
  Plan p = sample_plan();
  p.processes = ProcessLayout::kLaunch;
  Json j = plan_to_json(p);
  EXPECT_EQ(j["processes"], "launch");
  EXPECT_EQ(plan_from_json(j).processes, ProcessLayout::kLaunch);
  j.erase("processes");  // plans written before 2026-12-05
  EXPECT_EQ(plan_from_json(j).processes, ProcessLayout::kOne);
  j["processes"] = "threads";
  try {
    plan_from_json(j);
    ADD_FAILURE() << "read an unknown process layout";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("plan JSON: field 'processes': unknown process layout 'threads'"),
              std::string::npos)
        << e.what();
  }
}

TEST(PlanJson, RoundTripsTensorGroupsOfReplicas) {
  Plan p = sample_plan();
  p.groups[1] = DeviceGroup{{"g0", "g1", "g2", "g3"}, {4, 4, 4, 4}, GroupParallelism::kTensor, 2};
  const Json j = plan_to_json(p);
  EXPECT_EQ(j["groups"][1]["tensor_size"], 2);
  EXPECT_FALSE(j["groups"][0].contains("tensor_size"));
  const Plan q = plan_from_json(j);
  EXPECT_EQ(q.groups[1].tensor_size, 2);
  EXPECT_EQ(q.groups[1].replicas(), 2);
  Json data = j;
  data["groups"][0]["tensor_size"] = 2;  // only a tensor group has one
  EXPECT_THROW(plan_from_json(data), Error);
}

TEST(PlanJson, RoundTripsEveryOffload) {
  for (Offload o : {Offload::kNone, Offload::kOptimizerState, Offload::kActivations,
                    Offload::kActivationsAndOptimizerState}) {
    Plan p = sample_plan();
    p.stages[0].offload = o;
    const Json j = plan_to_json(p);
    EXPECT_EQ(j["stages"][0]["offload"], offload_name(o));
    EXPECT_EQ(plan_from_json(j).stages[0].offload, o);
    EXPECT_EQ(plan_to_json(plan_from_json(j)).dump(), j.dump());
  }
  Json bad = plan_to_json(sample_plan());
  bad["stages"][0]["offload"] = "weights";
  EXPECT_THROW(plan_from_json(bad), Error);
}

TEST(PlanJson, IsByteIdentical) {
  EXPECT_EQ(plan_to_json(sample_plan()).dump(2), plan_to_json(sample_plan()).dump(2));
}

TEST(PlanJson, RefusesOtherFormatsVersionsAndBadFields) {
  Json j = plan_to_json(sample_plan());
  Json wrong = j;
  wrong["version"] = kPlanJsonVersion + 1;
  EXPECT_THROW(plan_from_json(wrong), Error);
  wrong = j;
  wrong["format"] = "something";
  EXPECT_THROW(plan_from_json(wrong), Error);
  wrong["format"] = 2;  // not a string: was nlohmann's type error, reported as an internal error
  EXPECT_THROW(plan_from_json(wrong), Error);
  wrong = j;
  wrong.erase("stages");
  EXPECT_THROW(plan_from_json(wrong), Error);
  wrong = j;
  wrong["schedule"] = "zigzag";
  EXPECT_THROW(plan_from_json(wrong), Error);
  wrong = j;
  wrong["microbatches"] = 5;
  EXPECT_THROW(plan_from_json(wrong), Error);
  wrong = j;
  wrong["microbatches"] = 0;
  EXPECT_THROW(plan_from_json(wrong), Error);
  // Counts must be whole numbers that fit: nlohmann alone reads 2.5 as 2 and wraps 1e10.
  for (const auto& [field, value] : std::vector<std::pair<std::string, Json>>{
           {"microbatches", 2.5}, {"global_batch", 1e10}, {"global_batch", Json(10000000000LL)}}) {
    wrong = j;
    wrong[field] = value;
    try {
      plan_from_json(wrong);
      ADD_FAILURE() << field << " = " << value.dump() << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("field '" + field + "' must be a whole number"), std::string::npos)
          << e.what();
    }
  }
  wrong = j;
  wrong["groups"][0]["batch_shares"][0] = 1.5;
  try {
    plan_from_json(wrong);
    ADD_FAILURE() << "a batch share of 1.5 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("field 'batch_shares' must be a whole number"), std::string::npos)
        << e.what();
  }
  // A stage naming a group the plan does not have (was an out-of-range vector access in `partita run`).
  wrong = j;
  wrong["stages"][0]["group"] = static_cast<int>(j["groups"].size());
  try {
    plan_from_json(wrong);
    ADD_FAILURE() << "a stage with a missing group was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stage 0 names group"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace partita

namespace partita {
namespace {

TEST(PlanJson, WritesPredictedFieldsForScripts) {
  const Json j = plan_to_json(sample_plan());
  EXPECT_DOUBLE_EQ(j["predicted_step_ms"].get<double>(), 125.0);
  EXPECT_EQ(j["predicted_peak_bytes"]["cuda:0"].get<int64_t>(), int64_t{1} << 30);
  EXPECT_DOUBLE_EQ(j["predicted_joules"].get<double>(), 12.5);
}

TEST(PlanJson, RoundTripsSourceAndNodeLists) {
  Plan p = sample_plan();
  p.strategy = StrategyKind::kBranch;
  p.stages[0].nodes = {0, 2, 4, 1};
  p.stages[1].nodes = {3, 5, 6, 7, 8, 9};
  p.source.model_spec = "/abs/gpt.yaml";
  p.source.batch = 12;
  p.source.cluster = "/abs/cluster.yaml";
  p.source.cost = "roofline";
  p.source.memory_limit = Bytes(4096);
  p.source.device_slowdowns = {{"d0", 2.5}};
  p.source.power_caps = {{"d1", 250.0}};
  const Json j = plan_to_json(p);
  EXPECT_EQ(j["stages"][0]["nodes"].size(), 4u);
  EXPECT_FALSE(plan_to_json(sample_plan())["stages"][0].contains("nodes"));
  const Plan q = plan_from_json(j);
  EXPECT_EQ(q.stages[0].nodes, (std::vector<NodeId>{0, 2, 4, 1}));
  EXPECT_EQ(q.source.model_spec, "/abs/gpt.yaml");
  EXPECT_EQ(q.source.memory_limit, Bytes(4096));
  EXPECT_EQ(q.source.device_slowdowns, (std::map<std::string, double>{{"d0", 2.5}}));
  EXPECT_EQ(q.source.power_caps, (std::map<std::string, double>{{"d1", 250.0}}));
  EXPECT_EQ(plan_to_json(q).dump(), j.dump());
}

TEST(PlanJson, ReadsVersionOnePlans) {
  Json j = plan_to_json(sample_plan());
  j["version"] = 1;
  j.erase("predicted_step_ms");
  j.erase("predicted_peak_bytes");
  j.erase("predicted_joules");
  const Plan q = plan_from_json(j);
  EXPECT_EQ(q.stages.size(), 2u);
  EXPECT_TRUE(q.source.empty());
}

}  // namespace
}  // namespace partita

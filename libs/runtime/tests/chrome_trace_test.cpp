#include "partita/runtime/chrome_trace.h"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>

#include "partita/graph/analysis.h"
#include "partita/runtime/engine.h"
#include "partita/search/graph_identity.h"

namespace partita {

TEST(ChromeTrace, PipelinedTrainingShowsEveryStageMicrobatchTask) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 cores";
  LoadedModel m = load_model(std::string(PARTITA_MODELS_DIR) + "/mlp.pt");
  annotate_shapes(m, {parse_input_spec("8x64")});
  Plan p;
  p.graph = graph_identity(m.ir);
  p.mode = Mode::kTraining;
  p.optimizer = Optimizer::kSgd;
  p.schedule = Schedule::kOneFOneB;
  p.global_batch = 8;
  p.microbatches = 4;
  const NodeId cut = best_cut_points(m.ir, 1)[0].after_node;
  p.groups = {DeviceGroup{{"cpu:0"}, {2}}, DeviceGroup{{"cpu:1"}, {2}}};
  p.stages = {Stage{0, cut, 0}, Stage{cut + 1, m.ir.num_nodes() - 1, 1}};
  Engine engine(m, p);
  ChromeTraceObserver trace;
  engine.add_observer(&trace);
  StepInputs batch;
  batch.inputs = make_inputs({parse_input_spec("8x64")}, 1);
  batch.targets = engine.make_targets(batch.inputs);
  engine.step(batch);
  engine.step(batch);

  // Round trip through text: what a viewer would parse.
  const Json j = Json::parse(trace.to_json().dump());
  std::set<std::string> seen;
  double last_end_stage0_b3 = 0;
  for (const auto& e : j.at("traceEvents")) {
    if (e.at("ph") != "X") continue;
    EXPECT_GE(e.at("dur").get<double>(), 0.0);
    EXPECT_GE(e.at("ts").get<double>(), 0.0);
    const auto& a = e.at("args");
    if (a.at("microbatch").get<int>() < 0) continue;
    seen.insert(std::to_string(a.at("step").get<int>()) + "/" + std::to_string(a.at("stage").get<int>()) +
                "/" + e.at("name").get<std::string>());
    if (a.at("step") == 0 && a.at("stage") == 0 && e.at("name") == "B3") {
      last_end_stage0_b3 = e.at("ts").get<double>() + e.at("dur").get<double>();
    }
  }
  for (int step = 0; step < 2; ++step) {
    for (int stage = 0; stage < 2; ++stage) {
      for (int mb = 0; mb < 4; ++mb) {
        for (const char* kind : {"F", "B"}) {
          const std::string key =
              std::to_string(step) + "/" + std::to_string(stage) + "/" + kind + std::to_string(mb);
          EXPECT_TRUE(seen.count(key)) << "missing " << key;
        }
      }
    }
  }
  EXPECT_EQ(seen.size(), 2u * 2 * 4 * 2);
  EXPECT_GT(last_end_stage0_b3, 0.0);
  // Optimizer steps appear on the host row.
  EXPECT_NE(j.dump().find("\"optimizer\""), std::string::npos);
  // ts 0 is placed on the steady clock (how ranks' traces line up): between the engine's start and now.
  const double now_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
  ASSERT_TRUE(j.contains("origin_us"));
  EXPECT_GT(j.at("origin_us").get<double>(), now_us - 60e6);
  EXPECT_LE(j.at("origin_us").get<double>(), now_us);
}

TEST(ChromeTrace, MergePutsAnotherTimelineUnderItsOwnProcess) {
  Json a{{"traceEvents", Json::array({Json{{"ph", "X"}, {"pid", 1}, {"name", "F0"}}})}};
  const Json b{{"traceEvents", Json::array({Json{{"ph", "X"}, {"pid", 7}, {"name", "F0"}},
                                            Json{{"ph", "M"}, {"pid", 7}, {"name", "process_name"}}})}};
  merge_trace(a, b, 2, "simulated");
  ASSERT_EQ(a["traceEvents"].size(), 3u);  // original, the new process name, the moved event
  EXPECT_EQ(a["traceEvents"][2]["pid"], 2);
  EXPECT_EQ(a["traceEvents"][1]["args"]["name"], "simulated");
}

}  // namespace partita

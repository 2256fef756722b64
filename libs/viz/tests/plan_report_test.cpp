#include "partita/viz/plan_report.h"

#include <gtest/gtest.h>

#include <string>

#include "html_test_support.h"
#include "partita/core/error.h"

namespace partita {
namespace {

// A 2-stage plan over 8 nodes as `partita plan --json` writes it (cut down): stage 0 on a data-parallel
// group of two GPUs, stage 1 on one, with a prediction of 4 ms per step.
Json plan() {
  return Json::parse(R"({
    "graph": {"num_nodes": 8}, "mode": "training", "strategy": "hybrid", "schedule": "1f1b",
    "optimizer": "adam", "global_batch": 16, "microbatches": 4,
    "groups": [{"devices": ["gpu:0", "gpu:1"], "batch_shares": [3, 1], "parallelism": "data"},
               {"devices": ["gpu<2>"], "batch_shares": [4], "parallelism": "data"}],
    "stages": [{"first": 0, "last": 3, "group": 0, "checkpointing": "none", "offload": "optimizer_state"},
               {"first": 4, "last": 7, "group": 1, "checkpointing": "full", "offload": "none"}],
    "prediction": {"step_time_s": 0.004, "samples_per_second": 4000, "energy_j": 1.5,
      "devices": [{"device": "gpu:0", "busy_s": 0.003, "peak_memory_bytes": 1073741824, "energy_j": 0.5,
                   "model_state_bytes": 536870912},
                  {"device": "gpu:1", "busy_s": 0.001, "peak_memory_bytes": 536870912, "energy_j": 0.4,
                   "model_state_bytes": 536870912},
                  {"device": "gpu<2>", "busy_s": 0.002, "peak_memory_bytes": 268435456, "energy_j": 0.6,
                   "model_state_bytes": 0}],
      "hosts": [{"node": "ws", "peak_memory_bytes": 2147483648, "model_state_bytes": 1073741824,
                 "cpu_working_bytes": 0, "offloaded_activation_bytes": 0, "gathered_output_bytes": 0,
                 "capacity_bytes": 0}]}
  })");
}

// The simulated step: two device rows (pid 0) and one link (pid 1).
Json trace() {
  Json events = Json::array();
  const auto name = [&](int pid, int tid, const char* n) {
    events.push_back(
        {{"ph", "M"}, {"pid", pid}, {"tid", tid}, {"name", "thread_name"}, {"args", {{"name", n}}}});
  };
  name(0, 0, "gpu:0");
  name(0, 1, "gpu:1");
  name(1, 2, "gpu:0->gpu<2>");
  const auto task = [&](int pid, int tid, const char* cat, double ts) {
    events.push_back({{"ph", "X"},
                      {"pid", pid},
                      {"tid", tid},
                      {"name", "t"},
                      {"cat", cat},
                      {"ts", ts},
                      {"dur", 100.0},
                      {"args", {{"stage", 0}, {"microbatch", 0}}}});
  };
  task(0, 0, "forward", 0);
  task(0, 0, "backward", 200);
  task(0, 1, "forward", 0);
  task(1, 2, "transfer", 100);
  return Json{{"traceEvents", events}};
}

using testing::count;
using testing::svg_of;

PlanReportInputs inputs() {
  PlanReportInputs in;
  in.title = "gpt.yaml on ws.yaml";
  in.plan = plan();
  in.trace = trace();
  in.capacities = {{"gpu:0", 4294967296}, {"gpu:1", 4294967296}};
  in.alternatives = {
      PlanAlternative{"hybrid", "2 stage(s), 4 mb, gpu:0,gpu:1,gpu<2>", 4.0, 4000, 1073741824, 1.5, true},
      PlanAlternative{"data", "1 stage(s), 1 mb, gpu:0,gpu:1", 5.0, 3200, 2147483648, 1.2, true}};
  in.warnings = {"gpu:3 is not used: <slow>"};
  return in;
}

TEST(PlanReport, ShowsThePredictionPerDeviceAndSaysItIsPredicted) {
  const std::string html = plan_report_html(inputs());
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("predicted by partita's cost models and simulator, not measured"), std::string::npos);
  EXPECT_NE(html.find("<td><b>4.00 ms</b></td><td>4000 samples/s</td><td>1.5 J/step</td>"),
            std::string::npos);
  // busy 3 ms of a 4 ms step; 1 GiB of a 4 GiB device.
  EXPECT_NE(html.find("<td>gpu:0</td><td>3.00 ms</td><td>75%</td><td>1.00 GiB</td><td>512.00 MiB</td>"
                      "<td>4.00 GiB (25% used)</td><td>0.5 J</td>"),
            std::string::npos)
      << html;
  EXPECT_NE(html.find("<td>gpu&lt;2&gt;</td><td>2.00 ms</td><td>50%</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>-</td><td>0.6 J</td>"), std::string::npos) << "no capacity known for gpu<2>";
  EXPECT_NE(html.find("<td>ws</td><td>2.00 GiB</td><td>1.00 GiB</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>not described</td>"), std::string::npos);
  EXPECT_NE(html.find("<b>Warning:</b> gpu:3 is not used: &lt;slow&gt;"), std::string::npos);
  EXPECT_NE(html.find("<td>2</td><td>data</td><td>5.00 ms</td><td>3200</td><td>2.00 GiB</td><td>1.2</td>"),
            std::string::npos);
  EXPECT_EQ(html.find("gpu<2>"), std::string::npos) << "text is escaped";
  for (const char* tag : {"table", "tr", "svg", "rect", "title", "text", "p", "h2"}) {
    EXPECT_EQ(count(html, std::string("<") + tag + ">") + count(html, std::string("<") + tag + " "),
              count(html, std::string("</") + tag + ">"))
        << tag;
  }
}

// A plan for the processes of `partita launch` shows each process's share of its machine's host memory.
TEST(PlanReport, ALaunchedPlanShowsEachProcesssHostMemory) {
  EXPECT_EQ(plan_report_html(inputs()).find("per process"), std::string::npos);
  PlanReportInputs in = inputs();
  in.plan["prediction"]["hosts"][0]["processes"] = Json::parse(
      R"([{"rank": 0, "peak_memory_bytes": 1610612736}, {"rank": 1, "peak_memory_bytes": 536870912}])");
  const std::string html = plan_report_html(in);
  EXPECT_NE(html.find("<th>host memory</th><th>per process</th>"), std::string::npos) << html;
  EXPECT_NE(
      html.find("<td>ws</td><td>2.00 GiB</td><td>rank 0 1.50 GiB, rank 1 512.00 MiB</td><td>1.00 GiB</td>"),
      std::string::npos)
      << html;
}

TEST(PlanReport, NamesThePowerCapsThePlanWasMadeFor) {
  PlanReportInputs in = inputs();
  EXPECT_EQ(plan_report_html(in).find("power caps"), std::string::npos) << "no caps, no line";
  in.plan["source"] = Json{{"power_caps_w", {{"gpu:0", 360.0}, {"gpu<2>", 150.0}}}};
  const std::string html = plan_report_html(in);
  EXPECT_NE(
      html.find("Planned with power caps (a cube-law model of clock against power, not a measurement; "
                "<code>partita run --power-cap</code> applies them): gpu:0 at 360 W, gpu&lt;2&gt; at 150 W."),
      std::string::npos)
      << html;
}

TEST(PlanReport, ThePictureHasABarPerStageAndDeviceAndTheTimelinesEveryTask) {
  const std::string html = plan_report_html(inputs());
  const std::string picture = svg_of(html, "plan");
  EXPECT_EQ(count(picture, "<rect "), 3);  // stage 0 on two devices, stage 1 on one
  // 8 nodes over 640 px from x = 110: stage 1 (nodes 4..7) starts at 430 on the third row.
  EXPECT_NE(picture.find(R"(<rect x="430.0" y="62" width="320.0")"), std::string::npos) << picture;
  EXPECT_NE(
      picture.find("stage 0: nodes 0..3 on gpu:0, 3 sample(s) of each microbatch, offload optimizer_state"),
      std::string::npos);
  EXPECT_NE(
      picture.find("stage 1: nodes 4..7 on gpu&lt;2&gt;, 4 sample(s) of each microbatch, checkpointing"),
      std::string::npos);
  const std::string devices = svg_of(html, "timeline", 0), links = svg_of(html, "timeline", 1);
  EXPECT_EQ(count(devices, "<rect "), 3);
  EXPECT_NE(devices.find(">gpu:1</text>"), std::string::npos);
  EXPECT_EQ(count(links, "<rect "), 1);
  EXPECT_NE(links.find(">gpu:0-&gt;gpu&lt;2&gt;</text>"), std::string::npos);
}

// A stage on replicas of tensor-parallel groups: each bar names the matmul split and the replica's samples.
TEST(PlanReport, TensorGroupBarsNameTheSplitAndTheReplicaShare) {
  PlanReportInputs in = inputs();
  in.plan["groups"][0] = Json::parse(
      R"({"devices": ["gpu:0", "gpu:1"], "batch_shares": [4, 4], "parallelism": "tensor", "tensor_size": 2})");
  const std::string picture = svg_of(plan_report_html(in), "plan");
  EXPECT_NE(
      picture.find("stage 0: nodes 0..3 on gpu:1, 1/2 of its big matmuls (tensor parallel) on 4 sample(s) "
                   "of each microbatch"),
      std::string::npos)
      << picture;
}

TEST(PlanReport, LargeClustersDrawAtMostFortyEightRows) {
  PlanReportInputs in = inputs();
  Json& group = in.plan["groups"][0];
  group["devices"] = Json::array();
  group["batch_shares"] = Json::array();
  for (int d = 0; d < 100; ++d) {
    group["devices"].push_back("gpu:" + std::to_string(d));
    group["batch_shares"].push_back(1);
  }
  const std::string html = plan_report_html(in);
  const std::string picture = svg_of(html, "plan");
  EXPECT_EQ(count(picture, "<rect "), 48);  // stage 0's first 48 devices; gpu<2> comes after them
  EXPECT_NE(html.find("(53 more devices not drawn.)"), std::string::npos);  // 100 + gpu<2> - 48
}

TEST(PlanReport, APlanWithoutPredictionIsAClearError) {
  PlanReportInputs in = inputs();
  in.plan.erase("prediction");
  try {
    plan_report_html(in);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the plan has no 'prediction'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace partita

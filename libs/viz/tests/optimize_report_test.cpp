#include "partita/viz/optimize_report.h"

#include <gtest/gtest.h>

#include <regex>
#include <vector>

#include "html_test_support.h"
#include "partita/core/error.h"

namespace partita {
namespace {

// What `partita optimize` writes, cut down: a 2-stage pipeline on cpu:0 and cpu:1 over 10 nodes.
Json metrics() {
  return Json::parse(R"({
    "model": "/models/a<b>.pt", "mode": "training", "baseline_ms": 10.0, "baseline_config": "torch 2, blas 1",
    "plan_ms": 8.0, "baseline_joules": 0.25, "layout": "pipeline 2 stage(s) x4 mb on cpu:0+cpu:1", "rounds": 3, "steps_per_round": 20, "speedup": 1.25, "predicted_ms": 7.5,
    "measured_peak_bytes": 2097152, "predicted_peak_bytes": 1048576, "predicted_host_peak_bytes": 2000000,
    "candidates": [{"layout": "pipeline 2 stage(s) x4 mb on cpu:0+cpu:1", "predicted_ms": 7.5, "measured_ms": 8.1},
                   {"layout": "tensor 1 stage(s) x1 mb on cpu:0+cpu:1", "predicted_ms": 7.0, "measured_ms": null}],
    "run": {"workers": [{"device": "cpu:0", "stage": 0, "busy_ms_per_step": 6.0, "utilization": 0.75,
                         "predicted_busy_ms": 5.5},
                        {"device": "cpu:1", "stage": 1, "busy_ms_per_step": 5.0, "utilization": 0.625,
                         "predicted_busy_ms": 5.25}],
            "energy": {"joules_per_step": 0.2, "devices": [{"device": "cpu:0", "joules_per_step": 0.1,
                       "source": "estimated"}, {"device": "cpu:1", "joules_per_step": 0.1, "source": "estimated"}]}},
    "plan": {"graph": {"num_nodes": 10}, "strategy": "pipeline", "schedule": "1f1b", "optimizer": "adam",
             "global_batch": 8, "microbatches": 4, "predicted_joules": 0.15,
             "groups": [{"devices": ["cpu:0"], "batch_shares": [2]}, {"devices": ["cpu:1"], "batch_shares": [2]}],
             "stages": [{"first": 0, "last": 5, "group": 0, "checkpointing": "full", "offload": "none"},
                        {"first": 6, "last": 9, "group": 1, "checkpointing": "none", "offload": "none"}]}
  })");
}

// Measured: two steps (3 and 4), 2 tasks each on two workers plus the optimizer on the host; simulated: 3.
Json trace() {
  Json events = Json::array();
  for (int step : {3, 4}) {
    for (int w : {0, 1}) {
      for (int k = 0; k < 2; ++k) {
        events.push_back({{"ph", "X"},
                          {"pid", 1},
                          {"tid", w},
                          {"name", k ? "B0" : "F0"},
                          {"cat", k ? "backward" : "forward"},
                          {"ts", 1000.0 * step + 100 * k},
                          {"dur", 50.0},
                          {"args", {{"step", step}, {"stage", w}, {"microbatch", 0}}}});
      }
    }
    events.push_back({{"ph", "X"},
                      {"pid", 1},
                      {"tid", 1000},
                      {"name", "optimizer"},
                      {"cat", "optimizer"},
                      {"ts", 1000.0 * step + 300},
                      {"dur", 20.0},
                      {"args", {{"step", step}, {"microbatch", -1}}}});
  }
  events.push_back(
      {{"ph", "M"}, {"pid", 1}, {"tid", 0}, {"name", "thread_name"}, {"args", {{"name", "worker 0"}}}});
  for (int k = 0; k < 3; ++k) {
    events.push_back({{"ph", "X"},
                      {"pid", 2},
                      {"tid", k},
                      {"name", "F s0 mb0"},
                      {"cat", "forward"},
                      {"ts", 10.0 * k},
                      {"dur", 5.0},
                      {"args", {{"stage", 0}, {"microbatch", 0}}}});
  }
  return Json{{"traceEvents", events}};
}

using testing::count;
using testing::svg_of;

TEST(OptimizeReport, ShowsTheSideBySideTableAndEscapesText) {
  const std::string html = optimize_report_html(metrics(), trace());
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("/models/a&lt;b&gt;.pt"), std::string::npos);
  EXPECT_EQ(html.find("a<b>"), std::string::npos);
  EXPECT_NE(html.find("plain LibTorch (torch 2, blas 1)</td><td>-</td><td>10.00 ms"), std::string::npos);
  EXPECT_NE(
      html.find("<td>partita: pipeline 2 stage(s) x4 mb on cpu:0+cpu:1</td><td>7.50 ms</td><td>8.00 ms</td>"
                "<td><b>1.25x</b>"),
      std::string::npos);
  EXPECT_NE(html.find("0.2 J/step estimated from busy time (predicted 0.15), plain LibTorch 0.25 J/step"),
            std::string::npos);
  EXPECT_NE(html.find("<td>cannot run here</td>"), std::string::npos);  // the tensor candidate
  EXPECT_NE(html.find("<td>1</td><td>cpu:1</td><td>5.00 ms</td><td>5.25 ms</td><td>62.5%</td>"),
            std::string::npos);
  // Every element opened is closed.
  for (const char* tag : {"table", "tr", "svg", "rect", "title", "text", "p", "h2"}) {
    EXPECT_EQ(count(html, std::string("<") + tag + ">") + count(html, std::string("<") + tag + " "),
              count(html, std::string("</") + tag + ">"))
        << tag;
  }
}

TEST(OptimizeReport, ThePlanPictureHasABarPerStageDeviceAtItsNodeRange) {
  const std::string svg = svg_of(optimize_report_html(metrics(), trace()), "plan");
  ASSERT_FALSE(svg.empty());
  EXPECT_EQ(count(svg, "<rect "), 2);
  // 10 nodes over 640 px from x = 110: stage 0 covers nodes 0..5 (384 px), stage 1 nodes 6..9 from 494.
  EXPECT_NE(svg.find(R"(<rect x="110.0" y="6" width="384.0")"), std::string::npos) << svg;
  EXPECT_NE(svg.find(R"(<rect x="494.0" y="34" width="256.0")"), std::string::npos) << svg;
  EXPECT_NE(svg.find("stage 0: nodes 0..5 on cpu:0, 2 sample(s) of each microbatch, checkpointing"),
            std::string::npos);
}

TEST(OptimizeReport, TimelinesDrawOneMeasuredStepAndTheSimulatedOne) {
  const std::string html = optimize_report_html(metrics(), trace());
  const std::string measured = svg_of(html, "timeline", 0), simulated = svg_of(html, "timeline", 1);
  EXPECT_EQ(count(measured, "<rect "), 5);  // step 3 only: 2 workers x 2 tasks + the optimizer
  EXPECT_EQ(count(measured, "<title>"), 5);
  EXPECT_NE(measured.find(">worker 0</text>"), std::string::npos);  // the thread's name
  EXPECT_NE(measured.find(">thread 1000</text>"), std::string::npos);
  EXPECT_NE(measured.find("0.32 ms</text>"), std::string::npos);  // from 3000 to 3320 us
  EXPECT_EQ(count(simulated, "<rect "), 3);
}

TEST(OptimizeReport, ALaunchedJobDrawsEveryRanksStepAndTheSimulatedOneAfterThem) {
  // What optimize writes for a plan run by `partita launch -n 2`: rank r's rows are process r, the simulated
  // step process 2.
  Json m = metrics();
  m["processes"] = 2;
  Json launched = trace();
  for (auto& e : launched["traceEvents"]) {
    if (e["pid"] == 1) e["pid"] = e.value("tid", 0) == 1 ? 1 : 0;  // worker 1 on rank 1, the rest on rank 0
  }
  const std::string html = optimize_report_html(m, launched);
  const std::string rank0 = svg_of(html, "timeline", 0), rank1 = svg_of(html, "timeline", 1),
                    simulated = svg_of(html, "timeline", 2);
  EXPECT_EQ(count(rank0, "<rect "), 3);  // step 3: worker 0's two tasks and the optimizer
  EXPECT_NE(rank0.find(">worker 0</text>"), std::string::npos);
  EXPECT_EQ(count(rank1, "<rect "), 2);
  EXPECT_EQ(count(simulated, "<rect "), 3);
  EXPECT_NE(html.find("Measured, rank 1 of the 2 processes"), std::string::npos);
}

TEST(OptimizeReport, MissingFieldsAreAClearError) {
  Json m = metrics();
  m.erase("plan");
  try {
    optimize_report_html(m, trace());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.json has no 'plan'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace partita

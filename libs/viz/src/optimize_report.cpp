#include "partita/viz/optimize_report.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "html_parts.h"
#include "partita/core/error.h"
#include "partita/core/format.h"

namespace partita {

namespace {

using html::esc;
using html::ms;

const Json& need(const Json& j, const char* key, const char* where) {
  return html::need(j, key, where, "optimize report",
                    "give the metrics.json and trace.json that one `partita optimize` run wrote");
}

std::string bytes(const Json& j, const char* key) {
  return j.contains(key) && j.at(key).is_number() ? format_bytes(Bytes(j.at(key).get<int64_t>())) : "-";
}

std::string summary(const Json& m) {
  const Json& plan = need(m, "plan", "metrics.json");
  std::string energy = "-";
  if (m.contains("run") && m["run"].contains("energy")) {
    const Json& e = m["run"]["energy"];
    bool estimated = false;
    for (const auto& d : e.at("devices")) estimated = estimated || d.at("source") == "estimated";
    energy =
        fmt::format("{:.3g} J/step {} (predicted {:.3g})", e.at("joules_per_step").get<double>(),
                    estimated ? "estimated from busy time" : "measured", plan.value("predicted_joules", 0.0));
    if (m.contains("baseline_joules") && m["baseline_joules"].is_number())
      energy += fmt::format(", plain LibTorch {:.3g} J/step", m["baseline_joules"].get<double>());
  }
  std::string out = "<table>\n<tr><th></th><th>predicted</th><th>measured</th><th>speedup</th></tr>\n";
  out += fmt::format("<tr><td>plain LibTorch ({})</td><td>-</td><td>{}</td><td>1.00x</td></tr>\n",
                     esc(m.value("baseline_config", std::string("?"))),
                     ms(need(m, "baseline_ms", "metrics.json").get<double>()));
  out += fmt::format("<tr><td>partita: {}</td><td>{}</td><td>{}</td><td><b>{:.2f}x</b></td></tr>\n",
                     esc(m.value("layout", plan.value("strategy", std::string("?")) + " plan")),
                     ms(need(m, "predicted_ms", "metrics.json").get<double>()),
                     ms(need(m, "plan_ms", "metrics.json").get<double>()),
                     need(m, "speedup", "metrics.json").get<double>());
  out += "</table>\n<p>";
  out += fmt::format(
      "Peak memory: predicted {} on the largest device, {} on the host; measured {} (the plan's "
      "CPU tensor memory). Energy: {}. Medians of {} alternating rounds of {} steps.",
      bytes(m, "predicted_peak_bytes"), bytes(m, "predicted_host_peak_bytes"),
      bytes(m, "measured_peak_bytes"), esc(energy), m.value("rounds", 0), m.value("steps_per_round", 0));
  return out + "</p>\n";
}

std::string candidates(const Json& m) {
  std::string out =
      "<table>\n<tr><th>candidate (planner's ranking)</th><th>predicted</th><th>measured</th></tr>\n";
  for (const auto& c : need(m, "candidates", "metrics.json")) {
    const bool ran = c.contains("measured_ms") && c["measured_ms"].is_number();
    out += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                       esc(c.value("layout", std::string("?"))), ms(c.value("predicted_ms", NAN)),
                       ran ? ms(c["measured_ms"].get<double>()) : std::string("cannot run here"));
  }
  return out + "</table>\n";
}

std::string workers(const Json& m) {
  if (!m.contains("run") || !m["run"].contains("workers")) return "";
  std::string out =
      "<table>\n<tr><th>stage</th><th>device</th><th>busy per step</th><th>predicted</th>"
      "<th>utilization</th></tr>\n";
  for (const auto& w : m["run"]["workers"]) {
    out += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1f}%</td></tr>\n",
                       w.at("stage").get<int>(), esc(w.at("device").get<std::string>()),
                       ms(w.at("busy_ms_per_step").get<double>()), ms(w.value("predicted_busy_ms", NAN)),
                       100.0 * w.value("utilization", 0.0));
  }
  return out + "</table>\n";
}

}  // namespace

std::string optimize_report_html(const Json& metrics, const Json& trace) {
  const Json& plan = need(metrics, "plan", "metrics.json");
  std::string page = html::page_head("partita optimize: " + metrics.value("model", std::string("?")));
  page += fmt::format(
      "<h1>partita optimize</h1>\n<p>{} &middot; {} &middot; batch {} in {} microbatch(es), "
      "schedule {}, optimizer {}</p>\n",
      esc(metrics.value("model", std::string("?"))), esc(metrics.value("mode", std::string("?"))),
      plan.value("global_batch", 0), plan.value("microbatches", 0),
      esc(plan.value("schedule", std::string("?"))), esc(plan.value("optimizer", std::string("?"))));
  page += "<h2>Side by side</h2>\n" + summary(metrics);
  page +=
      "<h2>The plan</h2>\n<p>A row per device, a bar per stage over the graph's node order (hover for "
      "details).</p>\n" +
      html::plan_picture(plan);
  page += "<h2>Devices</h2>\n" + workers(metrics);
  page += "<h2>Candidates measured</h2>\n" + candidates(metrics);
  // In one process the measured step is the trace's process 1 and the simulated one process 2. A launched
  // job's (metrics "processes" N >= 2) has rank r's rows as process r and the simulated step as process N.
  const int processes = metrics.value("processes", 1);
  page += "<h2>Timelines</h2>\n";
  if (processes > 1) {
    for (int r = 0; r < processes; ++r) {
      page += fmt::format("<p>Measured, rank {} of the {} processes (one step):</p>\n", r, processes) +
              html::timeline(trace, r, fmt::format("rank {}", r));
    }
  } else {
    page += "<p>Measured (one step):</p>\n" + html::timeline(trace, 1, "measured");
  }
  page += "<p>Simulated (the planner's model of one step):</p>\n" +
          html::timeline(trace, processes > 1 ? processes : 2, "simulated");
  page +=
      "<p>Forward blue, backward orange, transfers teal, gradient reduction red, optimizer green. "
      "trace.json beside this page opens in Perfetto (ui.perfetto.dev) with every traced step.</p>\n";
  return page + html::page_tail();
}

}  // namespace partita

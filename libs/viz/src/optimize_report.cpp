#include "partita/viz/optimize_report.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/core/format.h"

namespace partita {

namespace {

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

const Json& need(const Json& j, const char* key, const char* where) {
  PARTITA_CHECK(j.contains(key), "optimize report: ", where, " has no '", key,
                "'; give the metrics.json and trace.json that one `partita optimize` run wrote");
  return j.at(key);
}

std::string ms(double v) { return std::isfinite(v) ? fmt::format("{:.2f} ms", v) : "-"; }
std::string bytes(const Json& j, const char* key) {
  return j.contains(key) && j.at(key).is_number() ? format_bytes(Bytes(j.at(key).get<int64_t>())) : "-";
}

// Colours by stage (plan picture) and by task kind (timelines).
const char* stage_colour(size_t s) {
  static const char* colours[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759",
                                  "#76b7b2", "#edc948", "#b07aa1", "#9c755f"};
  return colours[s % 8];
}
const char* kind_colour(const std::string& cat) {
  if (cat == "forward") return "#4e79a7";
  if (cat == "backward") return "#f28e2b";
  if (cat == "transfer") return "#76b7b2";
  if (cat == "allreduce" || cat == "gradient_reduce") return "#e15759";
  if (cat == "optimizer" || cat == "update") return "#59a14f";
  if (cat == "offload") return "#b07aa1";
  return "#bab0ac";
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

// A row per device, a bar per stage over the node order [0, num_nodes).
std::string plan_picture(const Json& plan) {
  const int nodes = std::max(1, need(need(plan, "graph", "plan"), "num_nodes", "plan.graph").get<int>());
  const Json& groups = need(plan, "groups", "plan");
  const Json& stages = need(plan, "stages", "plan");
  std::vector<std::string> devices;
  for (const auto& g : groups) {
    for (const auto& d : g.at("devices")) {
      if (std::find(devices.begin(), devices.end(), d.get<std::string>()) == devices.end())
        devices.push_back(d.get<std::string>());
    }
  }
  const int left = 110, width = 640, row = 28;
  const int height = row * static_cast<int>(devices.size()) + 30;
  std::string svg =
      fmt::format(R"(<svg class="plan" width="{}" height="{}" xmlns="http://www.w3.org/2000/svg">)",
                  left + width + 10, height) +
      "\n";
  for (size_t r = 0; r < devices.size(); ++r) {
    svg += fmt::format(R"(<text x="4" y="{}">{}</text>)", 20 + row * static_cast<int>(r), esc(devices[r])) +
           "\n";
  }
  for (size_t s = 0; s < stages.size(); ++s) {
    const Json& st = stages[s];
    const Json& g = groups.at(st.at("group").get<size_t>());
    const int first = st.at("first").get<int>(), last = st.at("last").get<int>();
    const bool listed = st.contains("nodes") && !st["nodes"].empty();
    for (size_t k = 0; k < g.at("devices").size(); ++k) {
      const std::string device = g["devices"][k].get<std::string>();
      const size_t r =
          static_cast<size_t>(std::find(devices.begin(), devices.end(), device) - devices.begin());
      const double x0 = left + width * static_cast<double>(first) / nodes;
      const double x1 = left + width * static_cast<double>(last + 1) / nodes;
      std::string what = fmt::format("stage {}: {} {}..{} on {}, {} sample(s) of each microbatch", s,
                                     listed ? "node list within" : "nodes", first, last, device,
                                     g.at("batch_shares")[k].get<int>());
      if (st.value("checkpointing", std::string("none")) != "none") what += ", checkpointing";
      if (st.value("offload", std::string("none")) != "none")
        what += ", offload " + st["offload"].get<std::string>();
      svg += fmt::format(
          R"(<rect x="{:.1f}" y="{}" width="{:.1f}" height="{}" fill="{}" opacity="{}"><title>{}</title></rect>)",
          x0, 6 + row * static_cast<int>(r), std::max(1.0, x1 - x0), row - 8, stage_colour(s),
          listed ? 0.5 : 0.9, esc(what));
      svg += fmt::format(R"(<text x="{:.1f}" y="{}" fill="white">s{}</text>)", x0 + 3,
                         20 + row * static_cast<int>(r), s) +
             "\n";
    }
  }
  svg +=
      fmt::format(R"(<text x="{}" y="{}">node 0</text><text x="{}" y="{}" text-anchor="end">node {}</text>)",
                  left, height - 4, left + width, height - 4, nodes - 1);
  return svg + "\n</svg>\n";
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

// Events of one process of the trace as a timeline: a row per thread, a rectangle per task. For the
// measured process only the first traced step is drawn (with the host's tasks of that step).
std::string timeline(const Json& trace, int pid, const std::string& title) {
  std::vector<const Json*> events;
  std::map<int, std::string> rows;  // tid -> name
  int first_step = -1;
  for (const auto& e : need(trace, "traceEvents", "trace.json")) {
    if (e.value("pid", -1) != pid) continue;
    if (e.value("ph", std::string()) == "M" && e.value("name", std::string()) == "thread_name")
      rows[e.value("tid", 0)] = e.at("args").value("name", std::string());
    if (e.value("ph", std::string()) != "X") continue;
    const int step = e.contains("args") ? e["args"].value("step", -1) : -1;
    if (step >= 0 && (first_step < 0 || step < first_step)) first_step = step;
    events.push_back(&e);
  }
  std::erase_if(events, [&](const Json* e) {
    const int step = e->contains("args") ? e->at("args").value("step", first_step) : first_step;
    return step != first_step;
  });
  if (events.empty()) return "<p>(no " + esc(title) + " events)</p>\n";
  double t0 = INFINITY, t1 = 0;
  for (const Json* e : events) {
    rows.try_emplace(e->value("tid", 0), "thread " + std::to_string(e->value("tid", 0)));
    t0 = std::min(t0, e->at("ts").get<double>());
    t1 = std::max(t1, e->at("ts").get<double>() + e->value("dur", 0.0));
  }
  std::map<int, int> row_of;
  for (const auto& [tid, name] : rows) row_of[tid] = static_cast<int>(row_of.size());
  const int left = 150, width = 700, row = 22;
  const double span = std::max(t1 - t0, 1e-9);
  std::string svg =
      fmt::format(R"(<svg class="timeline" width="{}" height="{}" xmlns="http://www.w3.org/2000/svg">)",
                  left + width + 10, row * static_cast<int>(rows.size()) + 24) +
      "\n";
  for (const auto& [tid, name] : rows) {
    const int used = static_cast<int>(std::count_if(
        events.begin(), events.end(), [&, t = tid](const Json* e) { return e->value("tid", 0) == t; }));
    if (used == 0) continue;
    svg += fmt::format(R"(<text x="4" y="{}">{}</text>)", 15 + row * row_of[tid], esc(name)) + "\n";
  }
  for (const Json* e : events) {
    const double x = left + width * (e->at("ts").get<double>() - t0) / span;
    const double w = std::max(0.5, width * e->value("dur", 0.0) / span);
    const std::string cat = e->value("cat", std::string());
    svg +=
        fmt::format(
            R"(<rect x="{:.1f}" y="{}" width="{:.1f}" height="{}" fill="{}"><title>{} ({}) {:.3f} ms</title></rect>)",
            x, 4 + row * row_of[e->value("tid", 0)], w, row - 6, kind_colour(cat),
            esc(e->value("name", std::string())), esc(cat), e->value("dur", 0.0) / 1000) +
        "\n";
  }
  svg += fmt::format(R"(<text x="{}" y="{}">0</text><text x="{}" y="{}" text-anchor="end">{:.2f} ms</text>)",
                     left, row * static_cast<int>(rows.size()) + 20, left + width,
                     row * static_cast<int>(rows.size()) + 20, span / 1000);
  return svg + "\n</svg>\n";
}

}  // namespace

std::string optimize_report_html(const Json& metrics, const Json& trace) {
  const Json& plan = need(metrics, "plan", "metrics.json");
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  html += "<title>partita optimize: " + esc(metrics.value("model", std::string("?"))) + "</title>\n";
  html +=
      "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px "
      "8px;text-align:left}"
      "svg text{font-size:12px;font-family:sans-serif}h2{margin-top:1.5em}</style>\n</head>\n<body>\n";
  html += fmt::format(
      "<h1>partita optimize</h1>\n<p>{} &middot; {} &middot; batch {} in {} microbatch(es), "
      "schedule {}, optimizer {}</p>\n",
      esc(metrics.value("model", std::string("?"))), esc(metrics.value("mode", std::string("?"))),
      plan.value("global_batch", 0), plan.value("microbatches", 0),
      esc(plan.value("schedule", std::string("?"))), esc(plan.value("optimizer", std::string("?"))));
  html += "<h2>Side by side</h2>\n" + summary(metrics);
  html +=
      "<h2>The plan</h2>\n<p>A row per device, a bar per stage over the graph's node order (hover for "
      "details).</p>\n" +
      plan_picture(plan);
  html += "<h2>Devices</h2>\n" + workers(metrics);
  html += "<h2>Candidates measured</h2>\n" + candidates(metrics);
  html += "<h2>Timelines</h2>\n<p>Measured (one step):</p>\n" + timeline(trace, 1, "measured") +
          "<p>Simulated (the planner's model of one step):</p>\n" + timeline(trace, 2, "simulated");
  html +=
      "<p>Forward blue, backward orange, transfers teal, gradient reduction red, optimizer green. "
      "trace.json beside this page opens in Perfetto (ui.perfetto.dev) with every traced step.</p>\n";
  return html + "</body>\n</html>\n";
}

}  // namespace partita

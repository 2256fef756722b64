#include "partita/viz/plan_report.h"

#include <fmt/format.h>

#include <algorithm>

#include "html_parts.h"
#include "partita/core/error.h"
#include "partita/core/format.h"

namespace partita {

namespace {

using html::esc;
using html::ms;

const Json& need(const Json& j, const char* key, const char* where) {
  return html::need(j, key, where, "plan report",
                    "give a plan written by `partita plan --json` or `partita simulate --json`");
}

std::string bytes_text(int64_t b) { return format_bytes(Bytes(b)); }

// The GPU power caps the plan was made for (`partita plan --power-cap`), if any.
std::string power_caps(const Json& plan) {
  const auto source = plan.find("source");
  if (source == plan.end() || !source->contains("power_caps_w") || (*source)["power_caps_w"].empty())
    return "";
  std::string caps;
  for (const auto& [device, watts] : (*source)["power_caps_w"].items())
    caps += fmt::format("{}{} at {:g} W", caps.empty() ? "" : ", ", esc(device), watts.get<double>());
  return "<p>Planned with power caps (a cube-law model of clock against power, not a measurement; "
         "<code>partita run --power-cap</code> applies them): " +
         caps + ".</p>\n";
}

std::string summary(const Json& plan) {
  const Json& p = need(plan, "prediction", "the plan");
  const double step_ms = 1000 * need(p, "step_time_s", "the plan's prediction").get<double>();
  return fmt::format(
      "<table>\n<tr><th>step time</th><th>throughput</th><th>energy</th></tr>\n"
      "<tr><td><b>{}</b></td><td>{:.4g} samples/s</td><td>{:.4g} J/step</td></tr>\n</table>\n",
      ms(step_ms), p.value("samples_per_second", 0.0), p.value("energy_j", 0.0));
}

std::string devices(const Json& plan, const std::map<std::string, int64_t>& capacities, double step_ms) {
  std::string out =
      "<table>\n<tr><th>device</th><th>busy per step</th><th>utilization</th><th>peak memory</th>"
      "<th>of which model state</th><th>capacity</th><th>energy</th></tr>\n";
  for (const auto& d : need(need(plan, "prediction", "the plan"), "devices", "the plan's prediction")) {
    const std::string id = d.at("device").get<std::string>();
    const double busy = 1000 * d.value("busy_s", 0.0);
    const int64_t peak = d.value("peak_memory_bytes", int64_t{0});
    const auto cap = capacities.find(id);
    std::string capacity = "-";
    if (cap != capacities.end() && cap->second > 0) {
      capacity = fmt::format("{} ({:.0f}% used)", bytes_text(cap->second), 100.0 * peak / cap->second);
    }
    out += fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{:.0f}%</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{:.4g} J</td></tr>\n",
        esc(id), ms(busy), step_ms > 0 ? 100.0 * busy / step_ms : 0.0, bytes_text(peak),
        bytes_text(d.value("model_state_bytes", int64_t{0})), esc(capacity), d.value("energy_j", 0.0));
  }
  return out + "</table>\n";
}

std::string hosts(const Json& plan) {
  const Json& p = need(plan, "prediction", "the plan");
  if (!p.contains("hosts") || p["hosts"].empty()) return "";
  // A plan for the processes of `partita launch`: each process's share of its machine's figure.
  const bool launched = std::any_of(p["hosts"].begin(), p["hosts"].end(),
                                    [](const Json& h) { return h.contains("processes"); });
  std::string out = fmt::format(
      "<table>\n<tr><th>machine</th><th>host memory</th>{}<th>weights and state</th><th>the step's batch"
      "</th><th>CPU devices' working memory</th><th>offloaded activations</th><th>gathered outputs</th>"
      "<th>capacity</th></tr>\n",
      launched ? "<th>per process</th>" : "");
  for (const auto& h : p["hosts"]) {
    const int64_t cap = h.value("capacity_bytes", int64_t{0});
    std::string processes;
    if (launched) {
      for (const auto& pp : h.value("processes", Json::array())) {
        processes += (processes.empty() ? "" : ", ") +
                     fmt::format("rank {} {}", pp.value("rank", 0),
                                 bytes_text(pp.value("peak_memory_bytes", int64_t{0})));
      }
      processes = "<td>" + processes + "</td>";
    }
    out += fmt::format(
        "<tr><td>{}</td><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></"
        "tr>\n",
        esc(h.value("node", std::string("?"))), bytes_text(h.value("peak_memory_bytes", int64_t{0})),
        processes, bytes_text(h.value("model_state_bytes", int64_t{0})),
        bytes_text(h.value("step_batch_bytes", h.value("batch_input_bytes", int64_t{0}))),
        bytes_text(h.value("cpu_working_bytes", int64_t{0})),
        bytes_text(h.value("offloaded_activation_bytes", int64_t{0})),
        bytes_text(h.value("gathered_output_bytes", int64_t{0})),
        cap > 0 ? bytes_text(cap) : std::string("not described"));
  }
  return out + "</table>\n";
}

std::string alternatives(const std::vector<PlanAlternative>& list) {
  if (list.empty()) return "";
  std::string out =
      "<h2>Alternatives</h2>\n<p>Feasible candidates, ranked by the objective (the first is the plan "
      "above).</p>\n<table>\n<tr><th>#</th><th>strategy</th><th>step</th><th>samples/s</th><th>peak "
      "memory</th><th>J/step</th><th>layout</th></tr>\n";
  for (size_t i = 0; i < list.size(); ++i) {
    const PlanAlternative& a = list[i];
    out += fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4g}</td><td>{}</td><td>{:.4g}</td>"
        "<td>{}{}</td></tr>\n",
        i + 1, esc(a.strategy), ms(a.step_ms), a.samples_per_second, bytes_text(a.peak_bytes), a.joules,
        esc(a.layout), a.pareto ? " (pareto)" : "");
  }
  return out + "</table>\n";
}

}  // namespace

std::string plan_report_html(const PlanReportInputs& in) {
  const Json& plan = in.plan;
  const double step_ms =
      1000 * need(need(plan, "prediction", "the plan"), "step_time_s", "the plan's prediction").get<double>();
  std::string page = html::page_head("partita plan: " + in.title);
  page += fmt::format(
      "<h1>partita plan</h1>\n<p>{} &middot; {} &middot; {} strategy &middot; batch {} in {} "
      "microbatch(es), schedule {}{}</p>\n",
      esc(in.title), esc(plan.value("mode", std::string("?"))), esc(plan.value("strategy", std::string("?"))),
      plan.value("global_batch", 0), plan.value("microbatches", 0),
      esc(plan.value("schedule", std::string("?"))),
      plan.value("mode", std::string()) == "training"
          ? ", optimizer " + esc(plan.value("optimizer", std::string("?")))
          : std::string());
  page +=
      "<p>Every figure on this page is predicted by partita's cost models and simulator, not measured: "
      "<code>partita run</code> or <code>partita optimize</code> measure a plan on this machine.</p>\n";
  for (const auto& w : in.warnings) page += "<p><b>Warning:</b> " + esc(w) + "</p>\n";
  page += "<h2>Prediction</h2>\n" + summary(plan) + power_caps(plan);
  page += "<h2>Devices</h2>\n" + devices(plan, in.capacities, step_ms) + hosts(plan);
  page +=
      "<h2>The plan</h2>\n<p>A row per device, a bar per stage over the graph's node order (hover for "
      "details).</p>\n" +
      html::plan_picture(plan);
  page += "<h2>Simulated step</h2>\n<p>Devices:</p>\n" + html::timeline(in.trace, 0, "device") +
          "<p>Links:</p>\n" + html::timeline(in.trace, 1, "link");
  page +=
      "<p>Forward blue, backward orange, transfers teal, gradient reduction red, optimizer green, offload "
      "purple.</p>\n";
  page += alternatives(in.alternatives);
  return page + html::page_tail();
}

}  // namespace partita

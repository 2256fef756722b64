#include "html_parts.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "partita/core/error.h"

namespace partita::html {

const Json& need(const Json& j, const char* key, const char* where, const char* report,
                 const char* what_to_do) {
  PARTITA_CHECK(j.contains(key), report, ": ", where, " has no '", key, "'; ", what_to_do);
  return j.at(key);
}

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

std::string ms(double v) { return std::isfinite(v) ? fmt::format("{:.2f} ms", v) : "-"; }

std::string page_head(const std::string& title) {
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  html += "<title>" + esc(title) + "</title>\n";
  html +=
      "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px "
      "8px;text-align:left}"
      "svg text{font-size:12px;font-family:sans-serif}h2{margin-top:1.5em}</style>\n</head>\n<body>\n";
  return html;
}

std::string page_tail() { return "</body>\n</html>\n"; }

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

std::string plan_picture(const Json& plan, size_t max_rows) {
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
  const size_t left_out = devices.size() > max_rows ? devices.size() - max_rows : 0;
  devices.resize(devices.size() - left_out);
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
    const std::string parallelism = g.value("parallelism", std::string("data"));
    for (size_t k = 0; k < g.at("devices").size(); ++k) {
      const std::string device = g["devices"][k].get<std::string>();
      const auto found = std::find(devices.begin(), devices.end(), device);
      if (found == devices.end()) continue;  // beyond max_rows
      const auto r = static_cast<int>(found - devices.begin());
      const double x0 = left + width * static_cast<double>(first) / nodes;
      const double x1 = left + width * static_cast<double>(last + 1) / nodes;
      std::string what =
          parallelism == "tensor"
              ? fmt::format(
                    "stage {}: {} {}..{} on {}, 1/{} of its big matmuls (tensor parallel) on {} "
                    "sample(s) of each microbatch",
                    s, listed ? "node list within" : "nodes", first, last, device,
                    g.value("tensor_size", g["devices"].size()), g.at("batch_shares")[k].get<int>())
              : fmt::format("stage {}: {} {}..{} on {}, {} sample(s) of each microbatch", s,
                            listed ? "node list within" : "nodes", first, last, device,
                            g.at("batch_shares")[k].get<int>());
      if (st.value("checkpointing", std::string("none")) != "none") what += ", checkpointing";
      if (st.value("offload", std::string("none")) != "none")
        what += ", offload " + st["offload"].get<std::string>();
      svg += fmt::format(
          R"(<rect x="{:.1f}" y="{}" width="{:.1f}" height="{}" fill="{}" opacity="{}"><title>{}</title></rect>)",
          x0, 6 + row * r, std::max(1.0, x1 - x0), row - 8, stage_colour(s), listed ? 0.5 : 0.9, esc(what));
      svg +=
          fmt::format(R"(<text x="{:.1f}" y="{}" fill="white">s{}</text>)", x0 + 3, 20 + row * r, s) + "\n";
    }
  }
  svg +=
      fmt::format(R"(<text x="{}" y="{}">node 0</text><text x="{}" y="{}" text-anchor="end">node {}</text>)",
                  left, height - 4, left + width, height - 4, nodes - 1);
  svg += "\n</svg>\n";
  if (left_out > 0) svg += fmt::format("<p>({} more devices not drawn.)</p>\n", left_out);
  return svg;
}

std::string timeline(const Json& trace, int pid, const std::string& title, size_t max_rows) {
  std::vector<const Json*> events;
  std::map<int, std::string> names;  // tid -> name
  int first_step = -1;
  for (const auto& e : need(trace, "traceEvents", "trace.json")) {
    if (e.value("pid", -1) != pid) continue;
    if (e.value("ph", std::string()) == "M" && e.value("name", std::string()) == "thread_name")
      names[e.value("tid", 0)] = e.at("args").value("name", std::string());
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
  // Rows: the threads that have events, in thread order; the busiest max_rows of them.
  std::map<int, double> busy;  // tid -> total duration
  for (const Json* e : events) busy[e->value("tid", 0)] += e->value("dur", 0.0);
  std::vector<std::pair<int, double>> by_busy(busy.begin(), busy.end());
  std::stable_sort(by_busy.begin(), by_busy.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  const size_t left_out = by_busy.size() > max_rows ? by_busy.size() - max_rows : 0;
  by_busy.resize(by_busy.size() - left_out);
  std::map<int, int> row_of;  // tid -> row
  for (const auto& [tid, total] : by_busy) row_of[tid] = 0;
  int next_row = 0;
  for (auto& [tid, r] : row_of) r = next_row++;
  std::erase_if(events, [&](const Json* e) { return row_of.count(e->value("tid", 0)) == 0; });
  double t0 = INFINITY, t1 = 0;
  for (const Json* e : events) {
    t0 = std::min(t0, e->at("ts").get<double>());
    t1 = std::max(t1, e->at("ts").get<double>() + e->value("dur", 0.0));
  }
  const int left = 150, width = 700, row = 22, rows = static_cast<int>(row_of.size());
  const double span = std::max(t1 - t0, 1e-9);
  std::string svg =
      fmt::format(R"(<svg class="timeline" width="{}" height="{}" xmlns="http://www.w3.org/2000/svg">)",
                  left + width + 10, row * rows + 24) +
      "\n";
  for (const auto& [tid, r] : row_of) {
    const auto named = names.find(tid);
    const std::string name = named != names.end() ? named->second : "thread " + std::to_string(tid);
    svg += fmt::format(R"(<text x="4" y="{}">{}</text>)", 15 + row * r, esc(name)) + "\n";
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
                     left, row * rows + 20, left + width, row * rows + 20, span / 1000);
  svg += "\n</svg>\n";
  if (left_out > 0) svg += fmt::format("<p>({} less busy rows not drawn.)</p>\n", left_out);
  return svg;
}

}  // namespace partita::html

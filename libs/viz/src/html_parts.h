#pragma once
// Pieces of partita's HTML reports (optimize_report.h, plan_report.h): escaping, colours, the plan picture
// and timelines drawn from Chrome trace events, as inline SVG. Internal to the viz library.
#include <string>

#include "partita/core/json_io.h"

namespace partita::html {

// j[key], or partita::Error "<report>: <where> has no '<key>'; <what to do>".
const Json& need(const Json& j, const char* key, const char* where, const char* report = "report",
                 const char* what_to_do = "give the files partita wrote");
std::string esc(const std::string& s);
std::string ms(double v);  // "1.23 ms", "-" when not finite
// "<!DOCTYPE html>...<body>" with the reports' style, and the end of the page.
std::string page_head(const std::string& title);
std::string page_tail();
// Colours by stage (plan picture) and by task kind (timelines).
const char* stage_colour(size_t s);
const char* kind_colour(const std::string& cat);
// The plan (plan_json.h's JSON) as a picture: a row per device, a bar per stage over the graph's node order,
// hover for the stage's nodes, batch share and memory savings. At most `max_rows` devices are drawn (a note
// says how many were left out). Throws partita::Error when the plan lacks a field it needs.
std::string plan_picture(const Json& plan, size_t max_rows = 48);
// The complete events ("ph": "X") of process `pid` of a Chrome trace as a timeline: a row per thread (named
// by thread_name metadata), a rectangle per task coloured by its category, hover for name and duration.
// Events with args.step: only the first step's are drawn. At most `max_rows` rows (busiest first).
std::string timeline(const Json& trace, int pid, const std::string& title, size_t max_rows = 48);

}  // namespace partita::html

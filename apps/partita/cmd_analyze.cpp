// partita analyze: what the model is — parameters, FLOPs, memory, top ops, critical path, branches, cut
// points, and whether it splits along the batch.
#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "analyze_report.h"
#include "commands.h"
#include "partita/core/json_io.h"
#include "partita/core/log.h"
#include "partita/graph/serialize.h"
#include "partita/torch_bridge/batch_check.h"
#include "partita/viz/graph_dot.h"

namespace partita::app {

namespace {

struct AnalyzeArgs {
  ModelArgs model;
  std::string json;
  std::string dot;
  std::string graph_json;
  int cuts = 3;
};

void run_analyze(const AnalyzeArgs& args) {
  check_output_path(args.json, "--json");
  check_output_path(args.dot, "--dot");
  check_output_path(args.graph_json, "--graph-json");
  const auto specs = args.model.specs();
  log_info(fmt::format("analyze: loading {}", args.model.model));
  LoadedModel model = load_model(args.model.model, ModuleMode::kEval, specs);
  annotate_shapes(model, specs);
  log_info("analyze: checking the batch dimension at a second batch size");
  const BatchCheckResult batch = check_batch_splittability(model, specs);
  AnalysisReport report = make_analysis_report(model.ir, batch, args.cuts);
  report.output_keys = model.output_keys;
  std::FILE* out = args.json == "-" ? stderr : stdout;
  fmt::print(out, "{}", report_to_text(model.ir, report, args.model.model));
  if (!args.json.empty()) write_json_file(args.json, report_to_json(model.ir, report));
  if (!args.dot.empty()) write_text_file(args.dot, graph_to_dot(model.ir));
  if (!args.graph_json.empty()) write_json_file(args.graph_json, graph_to_json(model.ir));
}

}  // namespace

Command register_analyze(CLI::App& app) {
  auto args = std::make_shared<AnalyzeArgs>();
  CLI::App* cmd =
      app.add_subcommand("analyze", "graph, shapes, FLOPs, memory, branches and cut points of a model");
  add_model_args(*cmd, args->model);
  cmd->add_option("--json", args->json, "write the analysis as JSON (- for stdout)");
  cmd->add_option("--dot", args->dot, "write a Graphviz picture of the graph");
  cmd->add_option("--graph-json", args->graph_json, "write partita's graph IR as JSON");
  cmd->add_option("--cuts", args->cuts, "how many pipeline cut points to list")->check(positive_integer());
  return Command{cmd, [args] { run_analyze(*args); }};
}

}  // namespace partita::app

#include "partita/search/search_options.h"

#include "partita/core/error.h"

namespace partita {

std::string_view mode_name(Mode m) { return m == Mode::kInference ? "inference" : "training"; }

std::string_view objective_name(Objective o) {
  switch (o) {
    case Objective::kTime:
      return "time";
    case Objective::kEnergy:
      return "energy";
    case Objective::kBalanced:
      break;
  }
  return "balanced";
}

std::string_view strategy_name(StrategyKind s) {
  switch (s) {
    case StrategyKind::kAuto:
      return "auto";
    case StrategyKind::kData:
      return "data";
    case StrategyKind::kPipeline:
      return "pipeline";
    case StrategyKind::kHybrid:
      return "hybrid";
    case StrategyKind::kBranch:
      return "branch";
    case StrategyKind::kTensor:
      return "tensor";
    case StrategyKind::kEven:
      break;
  }
  return "even";
}

std::string_view process_layout_name(ProcessLayout p) { return p == ProcessLayout::kOne ? "one" : "launch"; }

Mode parse_mode(std::string_view name) {
  for (Mode m : {Mode::kInference, Mode::kTraining}) {
    if (mode_name(m) == name) return m;
  }
  PARTITA_FAIL("unknown mode '", name, "': use inference or training");
}

Objective parse_objective(std::string_view name) {
  for (Objective o : {Objective::kTime, Objective::kEnergy, Objective::kBalanced}) {
    if (objective_name(o) == name) return o;
  }
  PARTITA_FAIL("unknown objective '", name, "': use time, energy or balanced");
}

StrategyKind parse_strategy(std::string_view name) {
  for (StrategyKind s :
       {StrategyKind::kAuto, StrategyKind::kData, StrategyKind::kPipeline, StrategyKind::kHybrid,
        StrategyKind::kBranch, StrategyKind::kTensor, StrategyKind::kEven}) {
    if (strategy_name(s) == name) return s;
  }
  PARTITA_FAIL("unknown strategy '", name, "': use auto, data, pipeline, hybrid, branch, tensor or even");
}

ProcessLayout parse_process_layout(std::string_view name) {
  for (ProcessLayout p : {ProcessLayout::kOne, ProcessLayout::kLaunch}) {
    if (process_layout_name(p) == name) return p;
  }
  PARTITA_FAIL("unknown process layout '", name,
               "': use one (one process, a thread per device) or launch (the processes of `partita launch`)");
}

void SearchOptions::validate() const {
  PARTITA_CHECK(global_batch >= 1, "search options: global_batch is ", global_batch,
                "; it must be at least 1");
  PARTITA_CHECK(graph_batch >= 0, "search options: graph_batch is ", graph_batch,
                "; use 0 (take it from the graph's first input) or a positive sample count");
  PARTITA_CHECK(!memory_limit || memory_limit->value() > 0, "search options: memory_limit is ",
                memory_limit ? memory_limit->value() : 0, " bytes; give a positive limit or none");
  PARTITA_CHECK(host_bandwidth.value() > 0, "search options: host_bandwidth is ", host_bandwidth.value(),
                " B/s; it must be positive");
  PARTITA_CHECK(max_microbatches >= 1, "search options: max_microbatches is ", max_microbatches,
                "; it must be at least 1");
  PARTITA_CHECK(microbatches >= 0, "search options: microbatches is ", microbatches,
                "; use 0 (let the planner choose) or a positive count");
  PARTITA_CHECK(microbatches == 0 || global_batch % microbatches == 0, "search options: microbatches ",
                microbatches, " does not divide the batch ", global_batch, "; pick a divisor of the batch");
  PARTITA_CHECK(batch_splittable || microbatches <= 1, "search options: ", microbatches,
                " microbatches asked for, but the model does not split along the batch (it computes "
                "something else on part of it); plan with one microbatch");
  PARTITA_CHECK(batch_splittable || graph_batch == 0 || global_batch == graph_batch,
                "search options: a global batch of ", global_batch,
                " asked for, but the model does not split "
                "along the batch and was traced at ",
                graph_batch, "; plan at the traced batch");
  PARTITA_CHECK(min_batch_share >= 1, "search options: min_batch_share is ", min_batch_share,
                "; it must be at least 1");
  PARTITA_CHECK(
      microbatches == 0 || global_batch / microbatches >= min_batch_share, "search options: ", microbatches,
      " microbatches of a batch of ", global_batch, " hold ", global_batch / microbatches,
      " sample(s) each, but the model needs at least ", min_batch_share,
      " per device (a batch norm of [batch, channels] traced in train mode outputs its bias alone on "
      "one sample); ask for fewer microbatches or a larger batch");
  PARTITA_CHECK(processes == ProcessLayout::kOne || process_links, "search options: planning for ",
                process_layout_name(processes),
                " processes needs the link between processes; measure it with `partita profile`");
  for (const LinkSpec* l : {process_links ? &process_links->message : nullptr,
                            process_links ? &process_links->collective : nullptr}) {
    PARTITA_CHECK(l == nullptr || l->bandwidth.value() > 0, "search options: the link between processes '",
                  l ? l->name : "", "' has bandwidth ", l ? l->bandwidth.value() : 0,
                  " B/s; it must be positive");
  }
  PARTITA_CHECK(max_blocks >= 1, "search options: max_blocks is ", max_blocks, "; it must be at least 1");
}

}  // namespace partita

// partita: hand us the model, get a faster (or greener) run.
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdio>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>

#include <unistd.h>

#include <torch/csrc/jit/runtime/print_handler.h>
#include <torch/torch.h>

#include "commands.h"
#include "partita/core/error.h"
#include "partita/core/log.h"
#include "partita/core/process_memory.h"
#include "partita/torch_bridge/model.h"

namespace partita::app {

std::vector<InputSpec> ModelArgs::specs() const {
  std::vector<InputSpec> out;
  for (const auto& s : inputs) out.push_back(parse_input_spec(s));
  return out;
}

void add_model_args(CLI::App& cmd, ModelArgs& args) {
  cmd.add_option("model", args.model, "TorchScript file (torch.jit.trace(model, example).save(path))")
      ->required();
  cmd.add_option("--input", args.inputs,
                 "input spec DIMxDIM...[:DTYPE[:HIGH]][:shared], one per forward() argument")
      ->required();
}

namespace {
// `label` is what --help shows after the type (INT:POSITIVE).
CLI::Validator integer_in(long long least, long long most, const std::string& what,
                          const std::string& label) {
  return CLI::Validator(
      [least, most, what](const std::string& text) -> std::string {
        long long value = 0;
        std::size_t used = 0;
        try {
          value = std::stoll(text, &used);
        } catch (const std::out_of_range&) {  // beyond a long long: as far out as one goes
          value = text.find('-') == std::string::npos ? LLONG_MAX : LLONG_MIN;
          used = text.size();
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != text.size() || value < least)
          return "'" + text + "' is not " + what + "; write a whole number such as " +
                 std::to_string(least + 1);
        if (value > most)
          return "'" + text + "' is too large; write a whole number up to " + std::to_string(most);
        return "";
      },
      label);
}

// A finite decimal number (not nan or inf) above `least`, or at least `least` when `or_equal`.
CLI::Validator number_above(double least, bool or_equal, const std::string& what, const std::string& example,
                            const std::string& label) {
  return CLI::Validator(
      [least, or_equal, what, example](const std::string& text) -> std::string {
        double value = 0;
        std::size_t used = 0;
        try {
          value = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != text.size() || !std::isfinite(value) || value < least ||
            (value == least && !or_equal))
          return "'" + text + "' is not " + what + "; write a number such as " + example;
        return "";
      },
      label);
}
}  // namespace

CLI::Validator positive_integer(long long most) {
  return integer_in(1, most, "a positive integer", "POSITIVE");
}
CLI::Validator nonnegative_integer(long long most) {
  return integer_in(0, most, "a non-negative integer", "NONNEGATIVE");
}
CLI::Validator positive_number(const std::string& example) {
  return number_above(0, false, "a positive number", example, "POSITIVE");
}
CLI::Validator nonnegative_number(const std::string& example) {
  return number_above(0, true, "a non-negative number", example, "NONNEGATIVE");
}

// A scripted model's print() (prim::Print) goes to stderr, as partita's progress does: stdout carries the
// results (`--json -`). partita runs a forward thousands of times (checks, profiling, measured steps): the
// first lines are shown, then one line says the rest are not.
void print_from_model(const std::string& text) {
  constexpr int kShown = 20;
  static std::atomic<int> printed{0};
  const int n = printed.fetch_add(1);
  if (n < kShown) {
    std::cerr << text << std::flush;
  } else if (n == kShown) {
    std::cerr << "partita: the model printed " << kShown
              << " lines; the rest of its print() output is not shown (partita runs it many times)\n"
              << std::flush;
  }
}

}  // namespace partita::app

int main(int argc, char** argv) {
  // Every step frees and re-allocates the same large tensors: keep that memory in the process (see
  // process_memory.h for the page-fault cost measured here). The baselines partita measures run in this
  // process too, so comparisons stay like for like.
  partita::keep_freed_memory_in_process();
  torch::jit::setPrintHandler(partita::app::print_from_model);
  CLI::App app{"partita: automatic parallelism for PyTorch models on mixed hardware"};
  app.require_subcommand(1);
  int threads = 0;
  bool quiet = false;
  app.add_option("--threads", threads,
                 "intra-op threads for LibTorch (default: all cores; LibTorch's own default can be 1 on VMs)")
      ->check(partita::app::nonnegative_integer());
  bool verbose = false;
  app.add_flag("-q,--quiet", quiet, "no progress output");
  app.add_flag("-v,--verbose", verbose, "progress output even when stderr is not a terminal");
  // One line per usage error, like every other partita error.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "partita: error: " + std::string(e.what()) + " (see partita --help)\n";
  });
  const std::vector<partita::app::Command> commands = {
      partita::app::register_analyze(app),  partita::app::register_verify(app),
      partita::app::register_devices(app),  partita::app::register_profile(app),
      partita::app::register_estimate(app), partita::app::register_loopback_worker(app),
      partita::app::register_plan(app),     partita::app::register_simulate(app),
      partita::app::register_run(app),      partita::app::register_optimize(app),
      partita::app::register_launch(app),
  };
  try {
    app.parse(argc, argv);
    // Progress lines are for people at a terminal; scripts get only results and the one error line.
    const bool show_progress = verbose || (!quiet && isatty(fileno(stderr)));
    partita::set_log_level(show_progress ? partita::LogLevel::kInfo : partita::LogLevel::kWarning);
    for (const auto& c : commands) {
      if (!c.cli->parsed()) continue;
      const int fallback =
          c.default_threads > 0 ? c.default_threads : static_cast<int>(std::thread::hardware_concurrency());
      at::set_num_threads(std::max(1, threads > 0 ? threads : fallback));
      c.run();
    }
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error 2, as POSIX utilities do (CLI11's own codes vary by
    // error: 105 for a rejected value, 109 for an unknown option).
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const partita::Error& e) {
    std::fprintf(stderr, "partita: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "partita: internal error: %s\n", partita::first_line(e).c_str());
    return 3;
  }
  return 0;
}

#pragma once
// The partita subcommands. Each registers its options on the CLI app and runs when selected.
#include <climits>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "partita/torch_bridge/input_spec.h"

namespace partita::app {

// Options every model command shares: MODEL.pt --input SPEC...
struct ModelArgs {
  std::string model;
  std::vector<std::string> inputs;
  std::vector<InputSpec> specs() const;
};
void add_model_args(CLI::App& cmd, ModelArgs& args);

// Checks for number options, with a message that says what is wanted (CLI11's PositiveNumber prints its
// range as 0 to 1.8e308). Whole numbers up to `most` (an int option's largest by default: CLI11 said only
// "Could not convert" for one beyond it); decimal numbers finite (nan and inf are refused).
CLI::Validator positive_integer(long long most = INT_MAX);      // 1, 2, ...
CLI::Validator nonnegative_integer(long long most = INT_MAX);   // 0, 1, ...
CLI::Validator positive_number(const std::string& example);     // > 0
CLI::Validator nonnegative_number(const std::string& example);  // >= 0

// A registered subcommand: its CLI node and what runs when it is selected (after options are parsed).
struct Command {
  CLI::App* cli = nullptr;
  std::function<void()> run;
  // Intra-op threads of the main thread when --threads is not given; 0 = every core. Commands whose work runs
  // on engine workers keep the main thread at 1: an idle multi-thread OpenMP team in the main thread keeps
  // spinning and slows the workers.
  int default_threads = 0;
};

Command register_analyze(CLI::App& app);
Command register_verify(CLI::App& app);
Command register_devices(CLI::App& app);
Command register_profile(CLI::App& app);
Command register_estimate(CLI::App& app);
Command register_loopback_worker(CLI::App& app);  // hidden: one rank of profile's loopback all-reduce
Command register_plan(CLI::App& app);
Command register_simulate(CLI::App& app);
Command register_run(CLI::App& app);
Command register_optimize(CLI::App& app);
Command register_launch(CLI::App& app);

}  // namespace partita::app

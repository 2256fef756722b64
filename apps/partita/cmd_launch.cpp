// partita launch -n N [--master-port P] -- COMMAND...: N local processes with torchrun's environment, so
// `partita launch -n 2 -- partita run MODEL.pt --plan plan.json ...` runs a 2-rank data-parallel job (see
// libs/runtime/include/partita/runtime/distributed_launch.h for output relaying and failure handling).
#include "commands.h"
#include "partita/runtime/distributed_launch.h"

namespace partita::app {

namespace {

struct LaunchCli {
  LaunchOptions options;
  double grace_s = 5;
};

}  // namespace

Command register_launch(CLI::App& app) {
  auto cli = std::make_shared<LaunchCli>();
  CLI::App* cmd = app.add_subcommand(
      "launch",
      "run N local processes of a command with the torchrun environment (RANK, WORLD_SIZE, MASTER_PORT...)");
  cmd->add_option("-n,--nproc", cli->options.processes, "number of processes (ranks)")->required();
  cmd->add_option("--master-port", cli->options.master_port,
                  "rendezvous port on 127.0.0.1 (default: a free one)");
  cmd->add_option(
         "--grace", cli->grace_s,
         "seconds the other ranks get to stop on their own after one fails, before SIGTERM (and again "
         "before SIGKILL)")
      ->check(nonnegative_number("5"));
  cmd->add_option(
         "command", cli->options.command,
         "the command after --; 'partita' means this binary (e.g. -- partita run MODEL.pt --plan p.json)")
      ->required();
  return Command{cmd,
                 [cli] {
                   cli->options.grace = Seconds(cli->grace_s);
                   launch_local(cli->options);
                 },
                 /*default_threads=*/1};
}

}  // namespace partita::app

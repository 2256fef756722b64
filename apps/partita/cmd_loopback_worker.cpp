// The hidden subcommand `partita __loopback-worker`: one rank of the loopback all-reduce, or of the message
// probe, that `partita profile` starts (two children of this binary). Not for users; its options may change.
#include <sstream>

#include "commands.h"
#include "partita/core/error.h"
#include "partita/runtime/process_link_probe.h"
#include "partita/torch_bridge/loopback_allreduce.h"

namespace partita::app {

namespace {

struct WorkerCli {
  LoopbackWorkerArgs args;
  std::string sizes;
  std::string probe = "allreduce";  // or "messages"
  std::string transport = "gloo";   // or "shared-memory"
};

std::vector<int64_t> parse_sizes(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      out.push_back(std::stoll(item));
    } catch (const std::exception&) {
      PARTITA_FAIL("bad --sizes '", text, "': use comma-separated byte counts");
    }
  }
  return out;
}

}  // namespace

Command register_loopback_worker(CLI::App& app) {
  auto cli = std::make_shared<WorkerCli>();
  CLI::App* cmd = app.add_subcommand("__loopback-worker", "");
  cmd->group("");  // hidden from --help
  cmd->add_option("--rank", cli->args.rank)->required();
  cmd->add_option("--world", cli->args.world)->required();
  cmd->add_option("--port", cli->args.port)->required();
  cmd->add_option("--sizes", cli->sizes)->required();
  cmd->add_option("--repeats", cli->args.repeats);
  cmd->add_option("--timeout-ms", cli->args.timeout_ms);
  cmd->add_option("--out", cli->args.out_path)->required();
  cmd->add_option("--probe", cli->probe)->check(CLI::IsMember({"allreduce", "messages"}));
  cmd->add_option("--transport", cli->transport)->check(CLI::IsMember({"shared-memory", "gloo"}));
  return Command{cmd, [cli] {
                   cli->args.sizes = parse_sizes(cli->sizes);
                   const ProcessTransport transport =
                       cli->transport == "gloo" ? ProcessTransport::kGloo : ProcessTransport::kSharedMemory;
                   if (cli->probe == "messages") {
                     run_process_link_probe(cli->args, transport);
                   } else if (transport == ProcessTransport::kSharedMemory) {
                     run_process_allreduce_probe(cli->args);
                   } else {
                     run_loopback_worker(cli->args);
                   }
                 }};
}

}  // namespace partita::app

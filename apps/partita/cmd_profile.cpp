// partita profile: microbenchmark this machine (or reuse the cached profile) and print the figures.
// PARTITA_PROFILE_QUICK=1 selects a quick mode (a few seconds; fewer sizes and repeats) for tests.
#include <fmt/format.h>

#include "commands.h"
#include "machine_devices.h"
#include "partita/core/format.h"
#include "partita/core/json_io.h"

namespace partita::app {

namespace {

struct ProfileArgs {
  bool refresh = false;
  std::string json;
};

void print_profile(std::FILE* out, const CachedProfile& c) {
  const MachineProfile& p = c.profile;
  fmt::print(out, "machine: {}\n", p.fingerprint);
  fmt::print(out, "profile: {} ({}{}{}, {:.1f} s)\n", c.path,
             c.from_cache ? "cached, measured " : "measured ", p.date, p.quick ? ", quick mode" : "",
             p.seconds_taken);
  fmt::print(out, "intra-op thread scaling (LibTorch threads):\n");
  for (const auto& s : p.thread_scaling) {
    fmt::print(out, "  {:>2} thread(s): matmul {:7.1f} GFLOP/s  conv {:7.1f} GFLOP/s  add {:6.1f} GB/s\n",
               s.threads, s.matmul.value() / 1e9, s.conv.value() / 1e9, s.elementwise.value() / 1e9);
  }
  fmt::print(out, "  best threads: matmul {}, conv {}, elementwise {}\n", p.best_matmul_threads,
             p.best_conv_threads, p.best_elementwise_threads);
  for (const auto& g : p.gemm) {
    fmt::print(out, "GEMM {:<6} {:<4} n={:<5} {:>8.1f} GFLOP/s{}\n", g.device, dtype_name(g.dtype), g.n,
               g.rate.value() / 1e9, g.threads > 0 ? fmt::format(" ({} threads)", g.threads) : "");
  }
  fmt::print(out, "memory bandwidth: copy {:.1f} GB/s, add {:.1f} GB/s (bytes read + written)\n",
             p.copy_bandwidth.value() / 1e9, p.add_bandwidth.value() / 1e9);
  fmt::print(out,
             "per-op overhead: {:.2f} us direct, {:.2f} us through the dispatcher (partita's executor)\n",
             p.op_overhead_direct.value() * 1e6, p.op_overhead_boxed.value() * 1e6);
  for (const auto& l : p.host_links) {
    fmt::print(out, "{}: {:.1f} GB/s, latency {:.1f} us\n", l.name, l.bandwidth.value() / 1e9,
               l.latency.value() * 1e6);
  }
  for (const auto& s : p.allreduce) {
    fmt::print(out, "all-reduce loopback {:>10}: {:.3f} ms\n", format_bytes(s.bytes), s.time.value() * 1e3);
  }
  if (p.loopback) {
    fmt::print(out, "loopback link (alpha-beta fit): latency {:.1f} us, bandwidth {:.2f} GB/s\n",
               p.loopback->latency.value() * 1e6, p.loopback->bandwidth.value() / 1e9);
  }
  for (const auto& s : p.process_messages) {
    fmt::print(out, "message between processes {:>10}: {:.3f} ms one way\n", format_bytes(s.bytes),
               s.time.value() * 1e3);
  }
  if (p.process_link) {
    fmt::print(out,
               "process link (shared memory, alpha-beta fit): latency {:.1f} us, bandwidth {:.2f} GB/s\n",
               p.process_link->latency.value() * 1e6, p.process_link->bandwidth.value() / 1e9);
  }
  for (const auto& s : p.process_allreduce) {
    fmt::print(out, "all-reduce through shared memory {:>10}: {:.3f} ms\n", format_bytes(s.bytes),
               s.time.value() * 1e3);
  }
  if (p.process_collective_link) {
    fmt::print(
        out, "collective link (shared memory, alpha-beta fit): latency {:.1f} us, bandwidth {:.2f} GB/s\n",
        p.process_collective_link->latency.value() * 1e6, p.process_collective_link->bandwidth.value() / 1e9);
  }
  for (const auto& d : p.devices) {
    fmt::print(out,
               "device {:<7} threads {:<2} f32 {:7.1f} GFLOP/s  bandwidth {:6.1f} GB/s  overhead {:.2f} us\n",
               d.id, d.threads, d.spec.flops_for(DType::kFloat32).value() / 1e9,
               d.spec.memory_bandwidth.value() / 1e9, d.spec.op_overhead.value() * 1e6);
  }
  for (const auto& n : p.notes) fmt::print(out, "note: {}\n", n);
}

void run_profile(const ProfileArgs& args) {
  check_output_path(args.json, "--json");
  const auto db = try_load_hardware_db();
  const CachedProfile c = machine_profile(db ? &*db : nullptr, args.refresh);
  print_profile(args.json == "-" ? stderr : stdout, c);
  if (!args.json.empty()) {
    Json j = machine_profile_to_json(c.profile);
    j["cache_path"] = c.path;
    j["from_cache"] = c.from_cache;
    write_json_file(args.json, j);
  }
}

}  // namespace

Command register_profile(CLI::App& app) {
  auto args = std::make_shared<ProfileArgs>();
  CLI::App* cmd = app.add_subcommand("profile", "microbenchmark this machine and cache the result");
  cmd->add_flag("--refresh", args->refresh, "measure again even when a cached profile exists");
  cmd->add_option("--json", args->json, "write the profile as JSON (- for stdout)");
  return Command{cmd, [args] { run_profile(*args); }};
}

}  // namespace partita::app

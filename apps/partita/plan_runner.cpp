#include "plan_runner.h"

#include <unistd.h>
#include <csignal>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <numeric>
#include <set>

#include <fmt/format.h>

#include "partita/core/error.h"
#include "partita/core/format.h"
#include "partita/core/log.h"
#include "partita/hardware/cpu_info.h"
#include "partita/runtime/blas_threads.h"
#include "partita/runtime/checkpoint.h"
#include "partita/runtime/distributed_group.h"
#include "partita/runtime/optimizer.h"
#include "partita/runtime/parameter_handover.h"
#include "partita/runtime/stage_metrics.h"
#include "partita/search/plan_json.h"
#include "partita/torch_bridge/memory_meter.h"
#include "partita/torch_bridge/timing.h"

namespace partita::app {

namespace {

// RunOptions::learning_rate, or the plan's optimizer's default when it is 0.
double learning_rate_of(const RunOptions& options, const Plan& plan) {
  return options.learning_rate > 0 ? options.learning_rate : default_learning_rate(plan.optimizer);
}

// Checkpoints of one run: on resume, the state is loaded into the model and a fresh optimizer (handed to the
// engine) before the engine is built; after each step, maybe_save() writes one when the step number is due.
class RunCheckpoint {
 public:
  RunCheckpoint(LoadedModel& model, const Plan& plan, const std::vector<InputSpec>& specs,
                const RunOptions& options)
      : model_(model), options_(options), local_stage_(options.local_stage) {
    if (options.checkpoint_dir.empty()) return;
    PARTITA_CHECK(plan.mode == Mode::kTraining, "--checkpoint-dir ", options.checkpoint_dir,
                  " needs a training run; run with --train and a training plan");
    PARTITA_ASSERT(options.warmup == 0, "checkpointed runs have no warm-up steps");
    identity_.model_path = model.path;
    identity_.model_file_bytes = static_cast<int64_t>(std::filesystem::file_size(model.path));
    identity_.model_fingerprint = model_fingerprint(model);
    identity_.plan = plan;
    for (const auto& s : specs) identity_.inputs.push_back(s.to_string());
    identity_.loss = std::string(loss_kind_name(options.loss));
    identity_.learning_rate = learning_rate_of(options, plan);
    if (!options.resume) {
      PARTITA_CHECK(!has_checkpoint(options.checkpoint_dir), "--checkpoint-dir ", options.checkpoint_dir,
                    " already holds a checkpoint; add --resume to continue it or choose another directory");
      return;
    }
    std::vector<torch::Tensor> trainable;
    for (const auto& p : model.parameters) {
      if (p.requires_grad()) trainable.push_back(p);
    }
    if (options.rebalance) {
      // A rebalanced run saved the plan running at the time: it goes on with that one (and its device
      // slowdowns), so the job must be the same, whatever the layout.
      Plan saved = checkpoint_plan(options.checkpoint_dir);
      const Json a = plan_to_json(saved), b = plan_to_json(plan);
      for (const char* key : {"graph", "mode", "strategy", "optimizer", "global_batch", "microbatches"}) {
        PARTITA_CHECK(a.at(key) == b.at(key), "the checkpoint in ", options.checkpoint_dir,
                      " was written for another job (\"", key, "\": ", a.at(key).dump(), ", the plan has ",
                      b.at(key).dump(),
                      "); resume with the plan it started from or start a new --checkpoint-dir");
      }
      identity_.plan = saved;
      resumed_plan_ = std::move(saved);
    }
    optimizer_ = make_optimizer(plan.optimizer, trainable, learning_rate_of(options, plan));
    // A pipeline's rank loads its stage's shard; a data-parallel rank and a single process the whole state.
    const int rank = options.group == nullptr ? -1 : options.group->rank();
    progress_ = load_checkpoint(options.checkpoint_dir, identity_, model.parameters, *optimizer_, rank);
    PARTITA_CHECK(progress_.steps < options.steps, "the checkpoint in ", options.checkpoint_dir, " has done ",
                  progress_.steps, " steps and --steps is ", options.steps,
                  ": nothing left to run; give --steps above ", progress_.steps, " to train further");
    log_info(fmt::format("resuming from the checkpoint in {} after step {}", options.checkpoint_dir,
                         progress_.steps));
  }

  // Resumed with --rebalance: the plan the checkpoint was running (its layout may differ from the given one).
  const std::optional<Plan>& resumed_plan() const { return resumed_plan_; }
  // A rebalance applied `plan`: later checkpoints record it (and, in a pipeline across processes, the tensors
  // of `local_stage`, the stage of it this process runs).
  void set_plan(const Plan& plan, int local_stage) {
    identity_.plan = plan;
    local_stage_ = local_stage;
  }
  // The optimizer to continue with (the engine's EngineOptions::optimizer); null: the engine makes one.
  std::shared_ptr<torch::optim::Optimizer> optimizer() const { return optimizer_; }
  const CheckpointProgress& progress() const { return progress_; }

  // `losses`: the loss of every step done, the checkpoint's included (so losses.size() is the step number).
  // `now`: save whatever the step number (a run stopped by a signal), unless this step is saved already.
  void maybe_save(Engine& engine, const std::vector<double>& losses, bool now = false) {
    const int done = static_cast<int>(losses.size());
    if (options_.checkpoint_dir.empty()) return;
    const bool due = options_.checkpoint_every > 0 && done % options_.checkpoint_every == 0;
    if (!due && done != options_.steps && !now) return;
    if (done == last_saved_ || done == progress_.steps) return;  // saved, or resumed and nothing new
    last_saved_ = done;
    const auto t0 = std::chrono::steady_clock::now();
    // One device of a tensor group per process holds only its parts of the split weights: the checkpoint is
    // whole (rank 0 writes it, as for data parallelism), so every rank gathers the parts for it and keeps
    // its own again afterwards (a background save's snapshot is copied before that).
    struct KeepParts {
      Engine& engine;
      bool gathered;
      ~KeepParts() {
        if (gathered) engine.hold_own_parts();
      }
    } keep_parts{engine, engine.hold_whole_model()};
    const auto ms_since = [](std::chrono::steady_clock::time_point t) {
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
    };
    // Every process keeps its random generators' states: a pipeline rank in its shard, data-parallel ranks
    // in the whole checkpoint that rank 0 writes (gathered here through the rendezvous store).
    CheckpointProgress progress{done, losses, engine.draw_states()};
    DistributedGroup* group = options_.group;
    if (group != nullptr && local_stage_ < 0) {  // workers' names differ between ranks: one set of states
      const std::vector<std::string> posted =
          group->gather_to_rank0("draws-" + std::to_string(done), draws_to_bytes(progress.draws));
      for (const std::string& bytes : posted) progress.draws.merge(draws_from_bytes(bytes));
    }
    if (group != nullptr && local_stage_ >= 0) {  // a pipeline: every rank writes its stage's shard
      const std::vector<int64_t> held = stage_tensor_indices(model_, identity_.plan, local_stage_);
      if (options_.checkpoint_writes == CheckpointWrites::kBackground) {
        save_shard_in_background(*group, progress, held, engine);
        stall_ms_.push_back(ms_since(t0));
        log_info(
            fmt::format("checkpoint after step {}: stage state copied in {:.1f} ms, writing it in the "
                        "background",
                        done, stall_ms_.back()));
        return;
      }
      const CheckpointShard shard =
          write_checkpoint_shard(options_.checkpoint_dir, done, group->rank(), model_.parameters, held,
                                 *engine.optimizer(), progress.draws);
      const std::vector<std::string> posted = group->gather_to_rank0("checkpoint-" + std::to_string(done),
                                                                     checkpoint_shard_to_json(shard).dump());
      if (group->rank() != 0) {
        stall_ms_.push_back(ms_since(t0));
        return;
      }
      std::vector<CheckpointShard> shards;
      for (const auto& text : posted) shards.push_back(checkpoint_shard_from_json(Json::parse(text)));
      commit_checkpoint_shards(options_.checkpoint_dir, identity_, progress, shards, {},
                               options_.checkpoint_keep);
    } else if (group != nullptr && group->rank() != 0) {  // data-parallel ranks all hold the same state
      return;
    } else if (options_.checkpoint_writes == CheckpointWrites::kBackground) {
      writer_.wait();  // one snapshot in memory at a time; rethrows the previous save's error
      auto snapshot = std::make_shared<const CheckpointSnapshot>(
          snapshot_checkpoint(progress, model_.parameters, *engine.optimizer()));
      writer_.submit([dir = options_.checkpoint_dir, identity = identity_, keep = options_.checkpoint_keep,
                      snapshot, ms_since]() mutable {
        const auto w0 = std::chrono::steady_clock::now();
        write_checkpoint(dir, identity, *snapshot, {}, keep);
        const int steps = snapshot->progress.steps;
        snapshot.reset();  // its copy of the state goes now, not when the next save collects this one
        log_info(fmt::format("checkpoint after step {} written in {} in the background ({:.1f} ms)", steps,
                             dir, ms_since(w0)));
      });
      stall_ms_.push_back(ms_since(t0));
      log_info(
          fmt::format("checkpoint after step {}: state copied in {:.1f} ms, writing it in the background",
                      done, stall_ms_.back()));
      return;
    } else {
      save_checkpoint(options_.checkpoint_dir, identity_, progress, model_.parameters, *engine.optimizer(),
                      {}, options_.checkpoint_keep);
    }
    stall_ms_.push_back(ms_since(t0));
    log_info(fmt::format("checkpoint after step {} saved in {} ({:.1f} ms)", done, options_.checkpoint_dir,
                         stall_ms_.back()));
  }

  // A pipeline rank's save in the background: its stage's state is copied now; a thread writes the shard,
  // posts its description to rank 0 through a store connection of its own, and on rank 0 gathers every
  // rank's and commits them together (as the synchronous save does, the training goes on meanwhile). Every
  // rank saves at the same steps, so the gathers pair up; one save in flight per rank.
  void save_shard_in_background(DistributedGroup& group, const CheckpointProgress& progress,
                                const std::vector<int64_t>& held, const Engine& engine) {
    writer_.wait();  // one snapshot in memory at a time; rethrows the previous save's error
    if (!channel_) channel_ = group.open_store_channel();
    auto snapshot = std::make_shared<const CheckpointSnapshot>(
        snapshot_checkpoint_shard(progress, model_.parameters, held, *engine.optimizer()));
    writer_.submit([dir = options_.checkpoint_dir, identity = identity_, keep = options_.checkpoint_keep,
                    rank = group.rank(), channel = channel_.get(), snapshot]() mutable {
      const auto w0 = std::chrono::steady_clock::now();
      const CheckpointShard shard = write_checkpoint_shard(dir, rank, *snapshot);
      const CheckpointProgress saved = snapshot->progress;
      snapshot.reset();  // its copy of the state goes now
      const std::vector<std::string> posted = channel->gather_to_rank0(
          "checkpoint-" + std::to_string(saved.steps), checkpoint_shard_to_json(shard).dump());
      if (rank != 0) return;
      std::vector<CheckpointShard> shards;
      for (const auto& text : posted) shards.push_back(checkpoint_shard_from_json(Json::parse(text)));
      commit_checkpoint_shards(dir, identity, saved, shards, {}, keep);
      log_info(fmt::format(
          "checkpoint after step {} committed in {} in the background ({:.1f} ms)", saved.steps, dir,
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count()));
    });
  }

  // Waits for a save still being written in the background (rethrowing its error); returns the per-save
  // stalls of the training loop.
  std::vector<double> finish() {
    writer_.wait();
    return stall_ms_;
  }

 private:
  LoadedModel& model_;
  const RunOptions& options_;
  int local_stage_ = -1;  // a pipeline across processes: the stage of identity_.plan this process runs
  CheckpointIdentity identity_;
  CheckpointProgress progress_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  std::optional<Plan> resumed_plan_;
  std::vector<double> stall_ms_;
  int last_saved_ = -1;                                      // the step count of this run's last checkpoint
  std::unique_ptr<DistributedGroup::StoreChannel> channel_;  // a pipeline rank's background saves
  BackgroundCheckpointWriter writer_;  // last member: destroyed first, waiting for a save in flight
};

int step_from_env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : -1;
}

// Test hooks. PARTITA_FAULT_EXIT_AT_STEP=K makes a single process print one line and _exit(1) before its step
// K (counted from 0 in this process, warm-up included), as a crash would (multi-process runs have theirs in
// the gradient reducer, same meaning). PARTITA_FAULT_SIGNAL_AT_STEP=K sends the process SIGTERM after its
// step K, as a scheduler would, at a step a test can name; in a multi-process job only rank
// PARTITA_FAULT_RANK (default 1) does.
void apply_single_process_fault_hook(int process_step) {
  static const int exit_at = step_from_env("PARTITA_FAULT_EXIT_AT_STEP");
  if (process_step != exit_at) return;
  std::fprintf(stderr, "partita: test hook: exits at step %d (PARTITA_FAULT_EXIT_AT_STEP)\n", process_step);
  std::fflush(stderr);
  _exit(1);
}
void apply_signal_hook(int process_step, const DistributedGroup* group) {
  static const int signal_at = step_from_env("PARTITA_FAULT_SIGNAL_AT_STEP");
  static const int named_rank = step_from_env("PARTITA_FAULT_RANK");
  static const int fault_rank = named_rank >= 0 ? named_rank : 1;
  if (process_step != signal_at) return;
  if (group == nullptr || group->rank() == fault_rank) std::raise(SIGTERM);
}

// Whether the run stops before its next step: asked by a signal (RunOptions::stop_requested) here or, in a
// multi-process job, in any rank. A signal reaches the ranks at different steps, or only one of them, so they
// vote, in a sum over all ranks, whether any was asked, and all of them stop before the same step (a
// checkpoint of it is whole). A vote costs about as much as a tiny step (0.4-0.6 ms on this VM for a
// 2-process MLP job whose steps take 3 ms; docs/distributed.md), so the ranks vote about every kVoteEveryMs
// of steps: each proposes the number of steps until the next vote from its own step times, and they take the
// mean of the proposals (the same integer on every rank).
class StopVote {
 public:
  static constexpr double kVoteEveryMs = 100;
  static constexpr int kMaxStepsBetweenVotes = 1000;

  explicit StopVote(const RunOptions& options) : options_(options) {}

  bool stop_before(int step) {
    if (options_.stop_requested == nullptr) return false;
    const bool here = options_.stop_requested->load();
    if (options_.group == nullptr) return here;
    if (step < next_vote_) return false;
    const auto now = std::chrono::steady_clock::now();
    int64_t proposal = 1;
    if (last_vote_step_ >= 0) {
      const double ms_per_step =
          std::chrono::duration<double, std::milli>(now - last_vote_time_).count() / (step - last_vote_step_);
      proposal = std::clamp<int64_t>(static_cast<int64_t>(kVoteEveryMs / std::max(ms_per_step, 1e-3)), 1,
                                     kMaxStepsBetweenVotes);
    }
    std::vector<torch::Tensor> vote{torch::tensor({int64_t{here ? 1 : 0}, proposal}, torch::kInt64)};
    options_.group->allreduce_sum(vote, step, "the vote on whether to stop");
    last_vote_step_ = step;
    last_vote_time_ = std::chrono::steady_clock::now();
    const int64_t asked = vote[0][0].item<int64_t>(), proposals = vote[0][1].item<int64_t>();
    next_vote_ = step + std::max<int64_t>(1, proposals / options_.group->world_size());
    return asked > 0;
  }

 private:
  const RunOptions& options_;
  int64_t next_vote_ = 0;
  int last_vote_step_ = -1;
  std::chrono::steady_clock::time_point last_vote_time_;
};

}  // namespace

namespace {
std::atomic<bool> g_stop_requested{false};
std::atomic<bool> g_stop_installed{false};
extern "C" void request_stop(int) { g_stop_requested.store(true); }
}  // namespace

StopOnSignal::StopOnSignal() {
  PARTITA_ASSERT(!g_stop_installed.exchange(true), "one StopOnSignal at a time");
  g_stop_requested.store(false);
  // SA_RESTART: a blocking read or write (a store's, a file's) goes on after the signal.
  int_.emplace(SIGINT, request_stop, SA_RESTART);
  term_.emplace(SIGTERM, request_stop, SA_RESTART);
}

StopOnSignal::~StopOnSignal() {
  term_.reset();
  int_.reset();
  g_stop_installed.store(false);
}

const std::atomic<bool>& StopOnSignal::requested() const { return g_stop_requested; }

namespace {

// Rebalancing across the processes of a data-parallel job (rebalancer.h): the busy times summed over the
// ranks by one small all-reduce per step, rank 0's decisions through the rendezvous store.
class GroupRebalanceChannel final : public RebalanceChannel {
 public:
  explicit GroupRebalanceChannel(DistributedGroup& group) : group_(group) {}
  std::vector<double> combine(std::vector<double> mine, int step) override {
    std::vector<torch::Tensor> sum = {torch::tensor(mine, torch::dtype(torch::kFloat64))};
    group_.allreduce_sum(sum, step, "the devices' busy times (--rebalance)");
    const torch::Tensor all = sum[0].contiguous();
    return {all.data_ptr<double>(), all.data_ptr<double>() + all.numel()};
  }
  bool plans() const override { return group_.rank() == 0; }
  bool several_processes() const override { return true; }
  std::string share(const std::string& decision, int step) override {
    return group_.broadcast_from_rank0("rebalance/" + std::to_string(step), decision, kPlannerWait);
  }
  void planner_ready() override { group_.broadcast_from_rank0("rebalance/ready", "", kPlannerWait); }

 private:
  // Rank 0 profiles a large model's ops, or plans a large graph again, while the others wait (a rank 0 that
  // dies ends the wait at once: under partita launch it hosts the store, under torchrun the agent stops the
  // job).
  static constexpr Seconds kPlannerWait{600};
  DistributedGroup& group_;
};

// A pipeline run with a process per stage moves its cuts or swaps its stages' devices (rebalancing across
// processes): every trained parameter goes from the rank whose stage read it under `from` (the first such
// stage; a tied weight is equal on all of them; stage k ran on rank from_ranks[k]) to every rank, and each
// rank keeps the state of those its stage reads under `to` (this rank ran stage `stage_before`, now
// `stage_after`).
void hand_over_moved_layers(DistributedGroup& group, LoadedModel& model, torch::optim::Optimizer& optimizer,
                            const Plan& from, const Plan& to, const std::vector<int>& from_ranks,
                            int stage_before, int stage_after, int step) {
  const auto stage_of = [](const Plan& plan, NodeId n) {
    for (size_t k = 0; k < plan.stages.size(); ++k) {
      const Stage& st = plan.stages[k];
      const bool runs = st.explicit_nodes() ? std::find(st.nodes.begin(), st.nodes.end(), n) != st.nodes.end()
                                            : st.first <= n && n <= st.last;
      if (runs) return static_cast<int>(k);
    }
    PARTITA_ASSERT(false, "a plan's stages (ranges or a branch plan's node lists) cover every node");
    return -1;
  };
  std::vector<torch::Tensor> params;
  std::vector<int> owner;
  std::vector<bool> keep;
  int moved = 0;
  for (size_t i = 0; i < model.parameters.size(); ++i) {
    if (!model.parameters[i].requires_grad()) continue;
    params.push_back(model.parameters[i]);
    int first = -1;
    bool mine = false, was_mine = false;
    for (NodeId u : model.ir.value(model.ir.parameters()[i].value).users) {
      const int before = stage_of(from, u);
      first = first < 0 ? before : std::min(first, before);
      was_mine = was_mine || before == stage_before;
      mine = mine || stage_of(to, u) == stage_after;
    }
    owner.push_back(from_ranks.at(static_cast<size_t>(first)));
    keep.push_back(mine);
    moved += mine && !was_mine ? 1 : 0;
  }
  hand_over_parameters(group, params, optimizer, owner, keep, step);
  log_info(
      fmt::format("rebalance: rank {} runs stage {} (was {}); took over {} parameter tensor(s) with their "
                  "optimizer state",
                  group.rank(), stage_after, stage_before, moved));
}

// A pipeline across processes: this process runs stage `stage` of `plan` and never reads the weights that
// only other stages read, although it loaded the whole model. Their storage is released, so the process holds
// the weights its stage reads, those several stages read (the reducer sums their gradients on every rank, so
// they keep their shape) and those no node reads; with `trainable_only`, frozen weights and buffers stay too.
// A storage that a kept tensor shares stays.
struct ReleasedWeights {
  struct Weight {
    size_t parameter = 0;        // into LoadedModel::parameters
    std::vector<int64_t> shape;  // its shape before
  };
  std::vector<Weight> weights;
  Bytes bytes{0};
};

ReleasedWeights release_other_stages_weights(LoadedModel& model, const Plan& plan, int stage,
                                             bool trainable_only) {
  const std::vector<std::vector<int>> readers = plan.parameter_stages(model.ir);
  std::vector<bool> keep(model.parameters.size(), true);
  std::set<const c10::StorageImpl*> kept;
  for (size_t i = 0; i < model.parameters.size(); ++i) {
    const std::vector<int>& r = readers[i];
    const torch::Tensor& t = model.parameters[i];
    keep[i] = r.size() != 1 || r[0] == stage || (trainable_only && !t.requires_grad());
    if (keep[i] && t.defined() && t.has_storage()) kept.insert(t.storage().unsafeGetStorageImpl());
  }
  torch::NoGradGuard no_grad;
  std::set<const c10::StorageImpl*> released;
  ReleasedWeights out;
  int64_t bytes = 0;
  for (size_t i = 0; i < model.parameters.size(); ++i) {
    torch::Tensor& t = model.parameters[i];
    if (keep[i] || !t.defined() || !t.has_storage()) continue;
    const c10::StorageImpl* storage = t.storage().unsafeGetStorageImpl();
    if (kept.count(storage) != 0) continue;
    if (released.insert(storage).second) bytes += static_cast<int64_t>(t.storage().nbytes());
    out.weights.push_back({i, t.sizes().vec()});
    t.set_data(torch::empty({0}, t.options()));
  }
  out.bytes = Bytes(bytes);
  return out;
}

// Gives released weights their shapes back, as zeros: a rebalance's hand-over then sums every trained
// weight's value over the ranks into them.
void restore_released_weights(LoadedModel& model, const ReleasedWeights& released) {
  torch::NoGradGuard no_grad;
  for (const ReleasedWeights::Weight& w : released.weights) {
    torch::Tensor& t = model.parameters[w.parameter];
    t.set_data(torch::zeros(w.shape, t.options()));
  }
}

}  // namespace

RunReport run_plan(LoadedModel& model, const Plan& plan, const std::vector<InputSpec>& specs,
                   const RunOptions& options) {
  PARTITA_CHECK(options.steps >= 1, "--steps must be at least 1, got ", options.steps);
  PARTITA_CHECK(spec_batch(specs) == plan.global_batch, "the plan is for a global batch of ",
                plan.global_batch, " but --input has batch ", spec_batch(specs),
                "; use the same input spec as for planning");
  // A stage that cannot fit is refused before anything runs. Host devices share the machine's memory; a
  // plan for one machine says how much of it the whole run needs (plans written before 2026-11-29 do not).
  const CpuInfo cpu = discover_cpu();
  for (const auto& d : plan.prediction.devices) {
    if (d.device.rfind("cpu", 0) != 0) continue;
    PARTITA_CHECK(d.peak_memory <= cpu.memory_available, "plan needs ", format_bytes(d.peak_memory), " on ",
                  d.device, " but this machine has ", format_bytes(cpu.memory_available),
                  " available; plan again with --memory-limit or a smaller batch");
  }
  if (plan.prediction.hosts.size() == 1) {
    const HostPrediction& host = plan.prediction.hosts[0];
    const Bytes need = host.peak_memory;
    PARTITA_CHECK(
        need <= cpu.memory_available, "plan needs ", format_bytes(need),
        host.processes.empty() ? std::string()
                               : " for its " + std::to_string(host.processes.size()) + " processes together",
        " of host memory (weights, optimizer state and CPU devices' activations) but this machine has ",
        format_bytes(cpu.memory_available),
        " available; plan again with a smaller batch or free memory first");
  }
  EngineOptions engine_options;
  engine_options.learning_rate = learning_rate_of(options, plan);
  engine_options.loss = options.loss;
  engine_options.random_seed = options.random_seed;
  engine_options.blas = options.blas;
  engine_options.local_replica = options.local_replica;
  engine_options.reducer = options.reducer;
  engine_options.transport = options.transport;
  engine_options.tensor_link = options.tensor_link;
  engine_options.inline_lone_worker = options.inline_lone_worker;
  // On resume: loads the checkpoint into the model and a fresh optimizer that the engine continues with.
  RunCheckpoint checkpoint(model, plan, specs, options);
  engine_options.optimizer = checkpoint.optimizer();
  // Resumed with --rebalance: the layout the checkpoint was running goes on (--inject-slowdown still names a
  // stage of the given plan).
  const Plan& start = checkpoint.resumed_plan() ? *checkpoint.resumed_plan() : plan;
  if (checkpoint.resumed_plan() && stage_layout(start) != stage_layout(plan))
    log_info(
        fmt::format("resuming on the rebalanced layout the checkpoint was running: {}", stage_layout(start)));
  // A pipeline across processes: each rank keeps the devices of its stage in the given plan and runs
  // whichever stage of the running plan has them.
  const std::vector<std::vector<std::string>> rank_devices = plan.stage_devices();
  if (options.local_stage >= 0) {
    PARTITA_ASSERT(options.group != nullptr && options.transport != nullptr &&
                       options.group->rank() == options.local_stage,
                   "a pipeline rank runs the stage of its rank in the given plan");
    options.transport->set_stage_ranks(stage_ranks_by_device(start, rank_devices));
    engine_options.local_stage = options.transport->stage_run_by(options.group->rank());
    checkpoint.set_plan(start, engine_options.local_stage);
  }
  // The rebalancer measures what it plans from (the model run whole) now, before weights are released.
  std::unique_ptr<GroupRebalanceChannel> rebalance_channel;
  std::unique_ptr<Rebalancer> rebalancer;
  if (options.rebalance) {
    RebalanceOptions rebalance_options = options.rebalance_options;
    if (options.group != nullptr) {  // the processes agree; each keeps its device, the batch shares move
      rebalance_channel = std::make_unique<GroupRebalanceChannel>(*options.group);
      rebalance_options.keep_devices = true;
    }
    rebalancer = std::make_unique<Rebalancer>(model, start, rebalance_options, rebalance_channel.get());
  }
  const bool training = plan.mode == Mode::kTraining;
  // With --rebalance a rank may take over other stages' layers later and only trained weights travel then
  // (the hand-over gives every rank all of them): frozen weights and buffers stay, and an inference run
  // keeps the whole model.
  const bool releases = options.local_stage >= 0 && (!options.rebalance || training);
  ReleasedWeights released;
  const auto release_for = [&](const Plan& running, int stage) {
    released = release_other_stages_weights(model, running, stage, options.rebalance);
    log_info(fmt::format("rank {} runs stage {}: released {} of weights only other stages read",
                         options.group->rank(), stage, format_bytes(released.bytes)));
  };
  if (releases) {
    release_for(start, engine_options.local_stage);
    // The host peak is measured from here: the released weights were the load's, not the run's.
    if (MemoryMeter::installed()) MemoryMeter::install().reset_peak();
  }
  auto engine = std::make_unique<Engine>(model, start, engine_options);
  // One device of a tensor group per process now holds its parts of the split weights only: the host peak
  // is measured from here too (the whole weights were the load's).
  if (engine->held_part_bytes() > 0) {
    log_info(fmt::format("rank {} holds its device's parts of the split weights: {}", options.group->rank(),
                         format_bytes(Bytes(engine->held_part_bytes()))));
    if (MemoryMeter::installed()) MemoryMeter::install().reset_peak();
  }
  // A resumed run draws on from where the checkpoint's run stopped.
  if (!checkpoint.progress().draws.empty()) engine->restore_draw_states(checkpoint.progress().draws);
  StageMetrics metrics;
  ChromeTraceObserver trace;
  std::unique_ptr<SlowdownInjector> injector;
  if (options.inject_slowdown) {
    const SlowdownSpec& s = *options.inject_slowdown;
    PARTITA_CHECK(s.stage < static_cast<int>(plan.stages.size()), "--inject-slowdown names stage ", s.stage,
                  " but the plan has ", plan.stages.size(), " stage(s); name a stage from 0 to ",
                  plan.stages.size() - 1);
    const std::string device = plan.groups[plan.stages[s.stage].group].devices.at(0);
    injector = std::make_unique<SlowdownInjector>(device, s.factor, s.step);
    log_info(fmt::format("injecting a {:.3g}x slowdown into {} (stage {}) from step {}", s.factor, device,
                         s.stage, s.step));
  }
  Plan current = start;
  // Observers of the running engine; after a rebalance they move to the new one.
  const auto observe = [&](Engine& e, bool tracing) {
    if (injector) e.add_observer(injector.get());  // first: it stretches the task the others then see
    e.add_observer(&metrics);
    if (rebalancer) e.add_observer(rebalancer.get());
    if (tracing) e.add_observer(&trace);
  };
  observe(*engine, false);
  bool tracing = false;

  StepInputs batch;
  batch.inputs = make_inputs(specs, /*seed=*/11);
  if (training) batch.targets = engine->make_targets(batch.inputs, /*seed=*/12);
  RunReport report;
  if (training) report.loss = std::string(loss_kind_name(engine->loss_kind()));
  report.losses = checkpoint.progress().losses;
  report.resumed_from_step = checkpoint.progress().steps;
  const int first = checkpoint.progress().steps;  // checkpointed runs have no warm-up
  const int total = options.warmup + options.steps;
  int metrics_steps = 0;                                          // steps the metrics cover
  std::vector<std::string> local_devices = start.used_devices();  // what this process runs
  if (options.local_stage >= 0) {
    local_devices = rank_devices.at(static_cast<size_t>(options.local_stage));
  } else if (options.local_replica >= 0) {
    local_devices = {plan.groups.at(plan.stages.at(0).group).devices.at(options.local_replica)};
  }
  RunEnergyMeter energy(local_devices);
  const int blas_pool = std::max(1, blas_threads());  // as the engine set it (-1: no OpenBLAS)
  StopVote stop_vote(options);
  for (int i = first; i < total; ++i) {
    if (i == std::max(first, options.warmup)) {  // count and trace only the steps after warm-up
      energy.start();
      metrics.reset();
      metrics_steps = 0;
      if (options.record_trace) engine->add_observer(&trace);
      tracing = options.record_trace;
    }
    if (stop_vote.stop_before(i)) {
      // The steps done are saved first; every rank of a job waits until the checkpoint is committed.
      if (training && !options.checkpoint_dir.empty() && i > first) {
        checkpoint.maybe_save(*engine, report.losses, /*now=*/true);
        checkpoint.finish();
        if (options.group != nullptr) options.group->barrier("the checkpoint saved before stopping");
        PARTITA_FAIL("stopped by a signal after step ", i, " of ", total, "; checkpoint saved in ",
                     options.checkpoint_dir, ": continue with --resume");
      }
      PARTITA_FAIL("stopped by a signal before step ", i + 1, " of ", total,
                   " (what the run changed, such as power caps, is put back)");
    }
    if (options.reducer == nullptr) apply_single_process_fault_hook(i - first);
    if (injector) injector->set_step(i);
    const auto t0 = std::chrono::steady_clock::now();
    const StepResult r = engine->step(batch);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= options.warmup) {
      report.step_ms.push_back(ms);
      if (training) report.losses.push_back(r.loss);
      report.offloaded = r.offloaded;
    }
    log_info(fmt::format("step {}/{}: {:.1f} ms{}{}", i + 1, total, ms,
                         i < options.warmup ? " (warm-up)" : "",
                         training ? fmt::format(", loss {:.6g}", r.loss) : ""));
    if (i >= options.warmup && training) checkpoint.maybe_save(*engine, report.losses);
    apply_signal_hook(i - first, options.group);
    ++metrics_steps;
    if (rebalancer && i < options.warmup) rebalancer->skip_step();
    if (rebalancer && i >= options.warmup && i + 1 < total) {
      if (std::optional<Plan> next = rebalancer->after_step(i)) {
        // Same model tensors, same optimizer (and its state), same microbatches: the math goes on unchanged.
        engine_options.optimizer = engine->optimizer();
        engine_options.first_step = i + 1 - first;  // the steps this process ran, as the first engine counts
        engine.reset();
        if (options.local_stage >= 0) {  // stages may change processes: the layers that moved bring their
                                         // weights and optimizer state
          std::vector<int> from_ranks;
          for (size_t k = 0; k < current.stages.size(); ++k)
            from_ranks.push_back(options.transport->rank_of(static_cast<int>(k)));
          const int stage_before = engine_options.local_stage;
          options.transport->set_stage_ranks(stage_ranks_by_device(*next, rank_devices));
          engine_options.local_stage = options.transport->stage_run_by(options.group->rank());
          if (training) {
            restore_released_weights(model, released);  // the hand-over fills them from their owners
            hand_over_moved_layers(*options.group, model, *engine_options.optimizer, current, *next,
                                   from_ranks, stage_before, engine_options.local_stage, i + 1 - first);
          }
          if (releases) release_for(*next, engine_options.local_stage);
        }
        engine = std::make_unique<Engine>(model, *next, engine_options);
        observe(*engine, tracing);
        checkpoint.set_plan(*next, engine_options.local_stage);
        current = std::move(*next);
        metrics.reset();  // per-worker figures describe the plan running at the end
        metrics_steps = 0;
      }
    }
  }
  report.checkpoint_stall_ms = checkpoint.finish();
  if (training) {
    for (const auto& home : engine->parameter_homes()) ++report.parameter_homes[home];
  }
  if (rebalancer) report.rebalances = rebalancer->events();
  report.final_plan = current;
  report.median_ms = median_of(report.step_ms);
  const auto [lo, hi] = std::minmax_element(report.step_ms.begin(), report.step_ms.end());
  report.spread_ms = *hi - *lo;
  report.samples_per_second = report.median_ms > 0 ? plan.global_batch * 1000.0 / report.median_ms : 0;
  for (const auto& w : metrics.workers()) {
    WorkerReport wr;
    wr.device = w.device;
    wr.stage = w.stage;
    wr.busy_ms_per_step = to_milliseconds(w.busy) / std::max(1, metrics_steps);
    const double covered_ms =
        std::accumulate(report.step_ms.end() -
                            std::min<ptrdiff_t>(metrics_steps, static_cast<ptrdiff_t>(report.step_ms.size())),
                        report.step_ms.end(), 0.0);
    wr.utilization = covered_ms > 0 ? to_milliseconds(w.busy) / covered_ms : 0;
    for (const auto& d : current.prediction.devices) {
      if (d.device == w.device) wr.predicted_busy_ms = to_milliseconds(d.busy);
    }
    report.workers.push_back(wr);
  }
  std::vector<std::pair<std::string, double>> busy;
  for (const auto& w : report.workers) busy.emplace_back(w.device, w.busy_ms_per_step);
  report.energy = energy.finish(static_cast<int>(report.step_ms.size()), report.median_ms, busy, blas_pool,
                                options.local_stage < 0 && options.local_replica < 0);
  if (options.record_trace) report.trace = trace.to_json();
  return report;
}

Bytes model_tensor_bytes(const LoadedModel& model) {
  std::set<const void*> seen;
  int64_t total = 0;
  for (const auto& t : model.parameters) {
    if (t.defined() && seen.insert(t.storage().unsafeGetStorageImpl()).second)
      total += static_cast<int64_t>(t.storage().nbytes());
  }
  return Bytes(total);
}

Bytes predicted_host_memory(const Plan& plan) {
  Bytes total(0);
  for (const auto& h : plan.prediction.hosts) total += h.peak_memory;
  return total;
}

Json run_report_to_json(const RunReport& r) {
  Json j;
  j["step_ms"] = r.median_ms;
  j["step_ms_all"] = r.step_ms;
  j["spread_ms"] = r.spread_ms;
  j["samples_per_second"] = r.samples_per_second;
  if (!r.losses.empty()) j["losses"] = r.losses;
  if (!r.loss.empty()) j["loss"] = r.loss;
  if (r.resumed_from_step > 0) j["resumed_from_step"] = r.resumed_from_step;
  if (!r.checkpoint_stall_ms.empty()) j["checkpoint_stall_ms"] = r.checkpoint_stall_ms;
  if (!r.rebalances.empty()) {
    Json events = Json::array();
    for (const auto& e : r.rebalances) events.push_back(rebalance_event_to_json(e));
    j["rebalances"] = events;
  }
  Json workers = Json::array();
  for (const auto& w : r.workers) {
    workers.push_back({{"device", w.device},
                       {"stage", w.stage},
                       {"busy_ms_per_step", w.busy_ms_per_step},
                       {"utilization", w.utilization},
                       {"predicted_busy_ms", w.predicted_busy_ms}});
  }
  j["workers"] = workers;
  if (!r.energy.empty()) j["energy"] = energy_to_json(r.energy);
  if (std::any_of(r.offloaded.begin(), r.offloaded.end(), [](const auto& o) { return o.tensors > 0; })) {
    Json offloaded = Json::array();
    for (const auto& o : r.offloaded) offloaded.push_back({{"bytes", o.bytes}, {"tensors", o.tensors}});
    j["offloaded_activations"] = offloaded;  // [stage], per step
  }
  if (!r.parameter_homes.empty()) j["parameter_homes"] = r.parameter_homes;
  return j;
}

}  // namespace partita::app

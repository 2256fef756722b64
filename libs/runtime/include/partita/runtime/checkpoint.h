#pragma once
// Training checkpoints: the model's tensors, the optimizer state and the progress of a training run, saved
// so that a later run continues with exactly the same steps (`partita run --checkpoint-dir D --resume`).
//
// Layout of a checkpoint directory D (only partita's C++ code reads it; no Python needed):
//   D/LATEST                 the name of the current checkpoint ("step-00000010\n")
//   D/step-00000010/         one complete checkpoint:
//     manifest.json          format, version, steps done, losses, model fingerprint, inputs, loss, lr and its
//                            shards: per state file its name, size, FNV-1a 64 hash, the rank that reads it
//                            (null: every process) and which module tensors it holds
//     plan.json              the plan it was trained with (usable as `--plan` on resume)
//     state.pt               a whole checkpoint (one process, or data-parallel ranks, which all hold every
//                            tensor): torch::serialize archive of "tensors" (every module tensor, keyed by
//                            its index in LoadedModel::parameters) and "optimizer" (Optimizer::save)
//     rank-0.pt, rank-1.pt   a sharded checkpoint (a pipeline across processes: each rank holds and trains
//                            its stage only): one archive per rank with the tensors its stage reads and its
//                            optimizer's state
// Atomicity: a save writes a new step directory under a temporary name, fsyncs its files and D, renames it
// into place and only then replaces D/LATEST (temporary file, fsync, rename, fsync D). A writer that dies at
// any point leaves the previous checkpoint readable; its leftovers are removed by the next successful save of
// the same or a later step.
// Retention: after a commit the `keep` newest step directories up to the new one stay (default 1: only the
// new one) and older ones go; so do step directories after the new one (written before LATEST was pointed
// back at an earlier checkpoint by hand, which is how a run goes back to a kept checkpoint: write its name
// into LATEST, then --resume). Sharded: every rank writes its shard as a temporary file in D (synced), rank 0
// gathers their descriptions (the caller's job: partita run does it through the rendezvous store), checks the
// files and commits them as above; a rank that dies before its shard is complete leaves nothing committed.
// Version 1 checkpoints (one state.pt, before shards) are read as a whole checkpoint. Thread safety: none;
// one writer per directory.
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include "partita/core/json_io.h"
#include "partita/runtime/draw_states.h"
#include "partita/search/plan.h"
#include "partita/torch_bridge/model.h"

namespace torch::optim {
class Optimizer;
}
namespace torch::serialize {
class OutputArchive;
}

namespace partita {

// Version 3 names the random generators' states by worker (draw_states.h); versions 1 and 2 are still read.
inline constexpr int kCheckpointVersion = 3;

// What a checkpoint belongs to. A resume presents the identity of the new run and is refused when it differs.
struct CheckpointIdentity {
  std::string model_path;           // recorded for people, not compared (the fingerprint is)
  int64_t model_file_bytes = 0;     // recorded for people, not compared
  std::string model_fingerprint;    // model_fingerprint(): compared
  Plan plan;                        // compared without its predictions and source
  std::vector<std::string> inputs;  // the --input specs (they fix the batch): compared
  std::string loss;                 // loss_kind_name of the run's loss choice: compared
  double learning_rate = 0.0;       // compared
};

// Where a training run stands.
struct CheckpointProgress {
  int steps = 0;               // optimizer steps done since training started
  std::vector<double> losses;  // the loss of each of those steps
  // The states of the random generators of the run's workers (Engine::draw_states), kept so that a resumed
  // run draws the dropout masks and noise the uninterrupted one would have. Saved: a whole checkpoint keeps
  // every process's (a data-parallel or tensor-parallel job's rank 0 gathers them), a pipeline rank's shard
  // its own. Loaded: all a whole checkpoint keeps, or the loading rank's shard's; empty when it keeps none
  // (written before they were kept).
  DrawStates draws;
};

// Generator states as bytes and back (torch::serialize), to post a rank's states to rank 0 through the
// rendezvous store. Throws partita::Error when `bytes` are not such states.
std::string draws_to_bytes(const DrawStates& draws);
DrawStates draws_from_bytes(const std::string& bytes);

// 16 hex digits: FNV-1a 64 over the graph's op names in node order and each module tensor's name, shape and
// dtype. Equal for the same architecture whatever the weights in the file.
std::string model_fingerprint(const LoadedModel& model);

// Test hook: called at "files_written" (the new step directory is complete under its temporary name) and
// "before_commit" (it is renamed into place, LATEST not yet replaced). Throwing from it simulates a writer
// that dies there.
using CheckpointFaultHook = std::function<void(std::string_view point)>;

// True when `dir` holds a committed checkpoint (a LATEST file).
bool has_checkpoint(const std::string& dir);

// One state file of a checkpoint.
struct CheckpointShard {
  int rank = -1;  // the process that reads it on resume; -1: every process (a whole checkpoint)
  std::vector<int64_t> tensors;  // the module tensors it holds (indices into LoadedModel::parameters)
  std::string file;              // its name inside the step directory
  int64_t bytes = 0;
  std::string fnv1a64;  // FNV-1a 64 of the file, 16 hex digits (versions 1-2: from another start, see .cpp)
};
Json checkpoint_shard_to_json(const CheckpointShard& shard);
CheckpointShard checkpoint_shard_from_json(const Json& j);  // throws partita::Error on a malformed one

// Saves `tensors` (every module tensor), the optimizer's state and `progress` into `dir` (created if needed)
// as a whole checkpoint, atomically replacing the previous checkpoint. Throws partita::Error naming the file
// on I/O errors.
void save_checkpoint(const std::string& dir, const CheckpointIdentity& identity,
                     const CheckpointProgress& progress, const std::vector<torch::Tensor>& tensors,
                     const torch::optim::Optimizer& optimizer, const CheckpointFaultHook& hook = {},
                     int keep = 1);

// An asynchronous save in two halves. snapshot_checkpoint (the training thread, between steps) copies the
// module tensors and hands the optimizer fresh copies of its state tensors (copy_state_tensors), keeping the
// ones it had: memory copies only, so the next step may start at once and change the live ones.
// write_checkpoint (any thread, once) serializes, writes, syncs and commits the snapshot exactly as
// save_checkpoint does, which is the two in a row. A snapshot holds a copy of the whole state (host memory
// for the state's size until it is written).
struct CheckpointSnapshot {
  CheckpointProgress progress;
  size_t tensors = 0;  // module tensors it holds (all: a whole checkpoint)
  std::shared_ptr<torch::serialize::OutputArchive> archive;  // "tensors" and "optimizer", as described above
  std::vector<int64_t> held;  // a rank's shard (snapshot_checkpoint_shard): its module tensors' indices
};
CheckpointSnapshot snapshot_checkpoint(const CheckpointProgress& progress,
                                       const std::vector<torch::Tensor>& tensors,
                                       torch::optim::Optimizer& optimizer);
void write_checkpoint(const std::string& dir, const CheckpointIdentity& identity,
                      const CheckpointSnapshot& snapshot, const CheckpointFaultHook& hook = {}, int keep = 1);

// Runs checkpoint saves on a thread of their own, one at a time and in order (one writer per directory),
// while training goes on. A save's exception is rethrown by the next submit() or wait(), on the caller's
// thread.
class BackgroundCheckpointWriter {
 public:
  BackgroundCheckpointWriter() = default;
  BackgroundCheckpointWriter(const BackgroundCheckpointWriter&) = delete;
  BackgroundCheckpointWriter& operator=(const BackgroundCheckpointWriter&) = delete;
  // Waits for a save still running (an error there is printed to stderr: a destructor cannot throw it).
  ~BackgroundCheckpointWriter();
  // Waits for the previous save (rethrowing its exception), then starts `save`.
  void submit(std::function<void()> save);
  // Waits for the save in flight, if any; rethrows its exception.
  void wait();

 private:
  std::future<void> pending_;
};

// Sharded checkpoints, step 1 (every rank): writes the module tensors listed in `held` (indices into
// `tensors`) and the optimizer's state as rank `rank`'s shard of the checkpoint after `steps` steps, into a
// temporary file in `dir` (synced), and returns its description for rank 0. `draws`: the rank's random
// generators' states (Engine::draw_states), kept in its shard.
CheckpointShard write_checkpoint_shard(const std::string& dir, int steps, int rank,
                                       const std::vector<torch::Tensor>& tensors,
                                       const std::vector<int64_t>& held,
                                       const torch::optim::Optimizer& optimizer,
                                       const DrawStates& draws = {});
// The same in two halves, for a save in the background (see CheckpointSnapshot): the snapshot copies the
// `held` module tensors and hands the optimizer fresh copies of its state tensors; writing it makes the
// shard's temporary file and returns its description.
CheckpointSnapshot snapshot_checkpoint_shard(const CheckpointProgress& progress,
                                             const std::vector<torch::Tensor>& tensors,
                                             const std::vector<int64_t>& held,
                                             torch::optim::Optimizer& optimizer);
CheckpointShard write_checkpoint_shard(const std::string& dir, int rank, const CheckpointSnapshot& snapshot);
// Step 2 (rank 0, once every rank's shard is written): commits a checkpoint made of `shards` (one per rank
// 0..n-1), atomically replacing the previous checkpoint. Refuses a missing rank or a shard file that is
// missing or not the size its rank described; nothing is committed then.
void commit_checkpoint_shards(const std::string& dir, const CheckpointIdentity& identity,
                              const CheckpointProgress& progress, const std::vector<CheckpointShard>& shards,
                              const CheckpointFaultHook& hook = {}, int keep = 1);

// The module tensors that stage `stage` of `plan` reads (indices into model.parameters, ascending): what its
// rank holds in a sharded checkpoint. Tensors no node reads go with stage 0.
std::vector<int64_t> stage_tensor_indices(const LoadedModel& model, const Plan& plan, int stage);

// Loads the checkpoint in `dir` into `tensors` (copied in place) and `optimizer` (which must be a fresh
// optimizer of the plan's kind over the model's trainable parameters, in order) and returns its progress.
// `rank`: -1 for a process that runs the whole plan, else the rank of a multi-process job. A whole checkpoint
// loads into any process; a sharded one only into ranks (each loads its own shard: the tensors it holds and
// its optimizer state). Throws partita::Error with one line (what, which value, what to do) when there is no
// checkpoint, when it was written for another model, plan, input, loss or learning rate, for another layout
// of processes, or when a file is truncated or corrupt. `tensors` are modified only after every check and the
// optimizer's load have passed.
CheckpointProgress load_checkpoint(const std::string& dir, const CheckpointIdentity& identity,
                                   const std::vector<torch::Tensor>& tensors,
                                   torch::optim::Optimizer& optimizer, int rank = -1);

// The plan the checkpoint LATEST names in `dir` was trained with (a rebalanced run's: the plan running when
// it was saved). Throws partita::Error as load_checkpoint does when there is no checkpoint or it is damaged.
Plan checkpoint_plan(const std::string& dir);

}  // namespace partita

#pragma once
// Training checkpoints: the model's tensors, the optimizer state and the progress of a training run, saved
// so that a later run continues with exactly the same steps (`partita run --checkpoint-dir D --resume`).
//
// Layout of a checkpoint directory D (only partita's C++ code reads it; no Python needed):
//   D/LATEST                 the name of the current checkpoint ("step-00000010\n")
//   D/step-00000010/         one complete checkpoint:
//     manifest.json          format, version, steps done, losses, model fingerprint, inputs, loss, lr and the
//                            size and FNV-1a hash of state.pt
//     plan.json              the plan it was trained with (usable as `--plan` on resume)
//     state.pt               torch::serialize archive: "tensors" (every module tensor,
//     LoadedModel::parameters
//                            order: trainable parameters and buffers) and "optimizer" (Optimizer::save)
// Atomicity: a save writes a new step directory under a temporary name, fsyncs its files and D, renames it
// into place and only then replaces D/LATEST (temporary file, fsync, rename, fsync D). A writer that dies at
// any point leaves the previous checkpoint readable; leftovers are removed by the next successful save.
// Thread safety: none; one writer per directory.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include "partita/search/plan.h"
#include "partita/torch_bridge/model.h"

namespace torch::optim {
class Optimizer;
}

namespace partita {

inline constexpr int kCheckpointVersion = 1;

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
};

// 16 hex digits: FNV-1a 64 over the graph's op names in node order and each module tensor's name, shape and
// dtype. Equal for the same architecture whatever the weights in the file.
std::string model_fingerprint(const LoadedModel& model);

// Test hook: called at "files_written" (the new step directory is complete under its temporary name) and
// "before_commit" (it is renamed into place, LATEST not yet replaced). Throwing from it simulates a writer
// that dies there.
using CheckpointFaultHook = std::function<void(std::string_view point)>;

// True when `dir` holds a committed checkpoint (a LATEST file).
bool has_checkpoint(const std::string& dir);

// Saves `tensors` (every module tensor), the optimizer's state and `progress` into `dir` (created if needed),
// atomically replacing the previous checkpoint. Throws partita::Error naming the file on I/O errors.
void save_checkpoint(const std::string& dir, const CheckpointIdentity& identity,
                     const CheckpointProgress& progress, const std::vector<torch::Tensor>& tensors,
                     const torch::optim::Optimizer& optimizer, const CheckpointFaultHook& hook = {});

// Loads the checkpoint in `dir` into `tensors` (copied in place) and `optimizer` (which must be a fresh
// optimizer of the plan's kind over the model's trainable parameters, in order) and returns its progress.
// Throws partita::Error with one line (what, which value, what to do) when there is no checkpoint, when it
// was written for another model, plan, input, loss or learning rate, or when a file is truncated or corrupt.
// `tensors` are modified only after every check and the optimizer's load have passed.
CheckpointProgress load_checkpoint(const std::string& dir, const CheckpointIdentity& identity,
                                   const std::vector<torch::Tensor>& tensors,
                                   torch::optim::Optimizer& optimizer);

}  // namespace partita

#include "partita/runtime/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <torch/optim.h>
#include <torch/serialize.h>

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/runtime/optimizer.h"
#include "partita/search/plan_json.h"

namespace partita {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "partita.checkpoint";
constexpr const char* kLatest = "LATEST";
constexpr const char* kStepPrefix = "step-";
constexpr const char* kTempPrefix = ".tmp-step-";
constexpr const char* kShardTempPrefix = ".tmp-shard-";
// Plan keys that describe predictions or where the plan came from, not how it runs.
const char* const kPlanKeysNotCompared[] = {"predicted_step_ms", "predicted_peak_bytes", "predicted_joules",
                                            "prediction", "source"};

// FNV-1a 64: stable across platforms and runs, unlike std::hash. Checkpoints up to version 2 (and the model
// fingerprint, which they store) started from kShortFnvBasis, the standard offset basis with its last digit
// dropped, so their state files' hashes matched no other FNV-1a tool; version 3 hashes files from the
// standard one (`python3 -c` with the textbook loop reproduces a manifest's fnv1a64). The fingerprint keeps
// the short basis: it is an identity compared with stored ones, not a checksum anyone recomputes.
constexpr uint64_t kFnvBasis = 14695981039346656037ULL;
constexpr uint64_t kShortFnvBasis = 1469598103934665603ULL;
struct Fnv {
  uint64_t h = kFnvBasis;
  void mix(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      h ^= p[i];
      h *= 1099511628211ULL;
    }
  }
  void mix(std::string_view s) { mix(s.data(), s.size()); }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

std::string file_hash(const fs::path& path, uint64_t basis) {
  std::ifstream in(path, std::ios::binary);
  PARTITA_CHECK(in.good(), "cannot read checkpoint file ", path.string());
  Fnv fnv{basis};
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    fnv.mix(buf.data(), static_cast<size_t>(in.gcount()));
  }
  return fnv.hex();
}

// fsync a file or a directory, so a rename that follows cannot be persisted before the data it names.
void sync_path(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  PARTITA_CHECK(fd >= 0, "cannot open ", path.string(), " to sync it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  PARTITA_CHECK(rc == 0, "cannot sync ", path.string(), ": ", std::strerror(err),
                "; check the disk holding the checkpoint directory");
}

void write_synced(const fs::path& path, const std::string& text) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    PARTITA_CHECK(out.good(), "cannot write ", path.string(),
                  "; check space and permissions of the directory");
  }
  sync_path(path, false);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string step_name(int steps) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%08d", kStepPrefix, steps);
  return buf;
}

std::string short_dump(const Json& j) {
  std::string s = j.is_null() ? "(absent)" : j.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

Json comparable_plan(const Plan& plan) {
  Json j = plan_to_json(plan);
  for (const char* key : kPlanKeysNotCompared) j.erase(key);
  return j;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

// The checkpoint's manifest checked against the new run; throws the first mismatch.
void check_identity(const Json& m, const CheckpointIdentity& id, const std::string& where) {
  const std::string fix = "; resume with the same model, plan and options, or start a new --checkpoint-dir";
  PARTITA_CHECK(m.value("model_fingerprint", "") == id.model_fingerprint, "checkpoint ", where,
                " was written for another model (", m.value("model_path", "?"), ", fingerprint ",
                m.value("model_fingerprint", "?"), ") than ", id.model_path, " (fingerprint ",
                id.model_fingerprint, ")", fix);
  const Json saved_plan = comparable_plan(plan_from_json(m.at("plan")));
  const Json plan = comparable_plan(id.plan);
  PARTITA_CHECK(saved_plan.value("global_batch", 0) == plan.value("global_batch", 0), "checkpoint ", where,
                " was written for global batch ", saved_plan.value("global_batch", 0), " but the plan has ",
                plan.value("global_batch", 0), fix);
  for (const Json* j : {&saved_plan, &plan}) {
    for (auto it = j->begin(); it != j->end(); ++it) {
      const std::string& key = it.key();
      const Json a = saved_plan.contains(key) ? saved_plan.at(key) : Json();
      const Json b = plan.contains(key) ? plan.at(key) : Json();
      PARTITA_CHECK(a == b, "checkpoint ", where, " was written for another plan (\"", key,
                    "\": ", short_dump(a), ", the plan has ", short_dump(b), "); resume with --plan ", where,
                    "/plan.json or start a new ", "--checkpoint-dir");
    }
  }
  const auto inputs = m.value("inputs", std::vector<std::string>{});
  PARTITA_CHECK(inputs == id.inputs, "checkpoint ", where, " was written for --input ", join(inputs),
                " but got ", join(id.inputs), fix);
  PARTITA_CHECK(m.value("loss", "") == id.loss, "checkpoint ", where, " was written with --loss ",
                m.value("loss", "?"), " but got ", id.loss, fix);
  const double lr = m.value("learning_rate", -1.0);
  PARTITA_CHECK(lr == id.learning_rate, "checkpoint ", where, " was written with --lr ", lr, " but got ",
                id.learning_rate, fix);
}

// Random generators' states in an archive: "draws", keyed by worker name (draw_states.h). Version 2 keyed
// them by position and kept a data-parallel job's rank R's in "draws-rank-R".
void write_draws(torch::serialize::OutputArchive& archive, const DrawStates& draws) {
  if (draws.empty()) return;
  torch::serialize::OutputArchive draws_archive;
  for (const auto& [name, state] : draws) draws_archive.write(name, state.clone());
  archive.write("draws", draws_archive);
}

// Reads the states an archive keeps for `rank` (none there: empty): all of its "draws"; from a version-2
// whole checkpoint, rank R's positional ones ("draws" is rank 0's then).
DrawStates read_draws(torch::serialize::InputArchive& archive, int rank = 0) {
  DrawStates draws;
  torch::serialize::InputArchive draws_archive;
  const bool legacy_rank = rank > 0 && archive.try_read("draws-rank-" + std::to_string(rank), draws_archive);
  if (!legacy_rank && !archive.try_read("draws", draws_archive)) return draws;
  for (const std::string& name : draws_archive.keys()) draws_archive.read(name, draws[name]);
  if (!legacy_rank && rank > 0 && positional_draw_states(draws)) draws.clear();  // rank 0's, by position
  return draws;
}

// An archive of the module tensors listed in `held` (copies when `copy`), the optimizer's state (its
// tensors themselves) and, when there are any, the random generators' states ("draws", by worker name).
std::shared_ptr<torch::serialize::OutputArchive> state_archive(const std::vector<torch::Tensor>& tensors,
                                                               const std::vector<int64_t>& held,
                                                               const torch::optim::Optimizer& optimizer,
                                                               bool copy, const DrawStates& draws = {}) {
  auto archive = std::make_shared<torch::serialize::OutputArchive>();
  torch::serialize::OutputArchive tensor_archive;
  for (const int64_t i : held) {
    PARTITA_ASSERT(i >= 0 && i < static_cast<int64_t>(tensors.size()), "tensor index ", i, " out of range");
    tensor_archive.write(std::to_string(i), tensors[static_cast<size_t>(i)].detach().to(
                                                torch::kCPU, /*non_blocking=*/false, copy));
  }
  archive->write("tensors", tensor_archive);
  torch::serialize::OutputArchive optimizer_archive;
  optimizer.save(optimizer_archive);
  archive->write("optimizer", optimizer_archive);
  write_draws(*archive, draws);
  return archive;
}

// What a state file holds: its size and FNV-1a 64.
struct WrittenState {
  int64_t bytes = 0;
  std::string fnv1a64;
};

// Serializes `archive` into the state file `path` (synced), hashing the bytes as they go: the file is not
// read back and no second copy of the state is made in memory.
WrittenState write_state(const fs::path& path, torch::serialize::OutputArchive& archive) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  Fnv fnv;
  WrittenState written;
  try {
    archive.save_to([&](const void* data, size_t n) {
      out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
      fnv.mix(data, n);
      written.bytes += static_cast<int64_t>(n);
      return out.good() ? n : size_t{0};
    });
  } catch (const c10::Error& e) {
    PARTITA_FAIL("cannot write ", path.string(), ": ", first_line(e), "; check space and permissions");
  }
  out.flush();
  PARTITA_CHECK(out.good(), "cannot write ", path.string(), "; check space and permissions of the directory");
  out.close();
  sync_path(path, false);
  written.fnv1a64 = fnv.hex();
  return written;
}

std::vector<int64_t> all_indices(size_t n) {
  std::vector<int64_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<int64_t>(i);
  return v;
}

std::string shard_temp_name(int steps, int rank) {
  return std::string(kShardTempPrefix) + std::to_string(steps) + "-rank-" + std::to_string(rank) + ".pt";
}

// The step a committed checkpoint's directory name ("step-00000012") holds; -1: not one.
int committed_step(const std::string& name) {
  if (name.size() != std::strlen(kStepPrefix) + 8 || name.rfind(kStepPrefix, 0) != 0) return -1;
  const std::string digits = name.substr(std::strlen(kStepPrefix));
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoi(digits);
}

// The step a temporary name (".tmp-step-12-345", ".tmp-shard-12-rank-0.pt") belongs to; -1: not one of ours.
int temp_step(const std::string& name) {
  for (const char* prefix : {kTempPrefix, kShardTempPrefix}) {
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(std::strlen(prefix));
    const size_t digits = rest.find_first_not_of("0123456789");
    if (digits == 0 || rest.empty()) return -1;
    return std::stoi(rest.substr(0, digits == std::string::npos ? rest.size() : digits));
  }
  return -1;
}

Json make_manifest(const CheckpointIdentity& identity, const CheckpointProgress& progress, size_t tensors,
                   const std::vector<CheckpointShard>& shards) {
  Json m;
  m["format"] = kFormat;
  m["version"] = kCheckpointVersion;
  m["steps"] = progress.steps;
  m["losses"] = progress.losses;
  m["model_path"] = identity.model_path;
  m["model_file_bytes"] = identity.model_file_bytes;
  m["model_fingerprint"] = identity.model_fingerprint;
  m["tensors"] = tensors;
  m["inputs"] = identity.inputs;
  m["loss"] = identity.loss;
  m["learning_rate"] = identity.learning_rate;
  Json list = Json::array();
  for (const auto& shard : shards) list.push_back(checkpoint_shard_to_json(shard));
  m["shards"] = list;
  m["plan"] = plan_to_json(identity.plan);
  return m;
}

void check_progress(const CheckpointProgress& progress) {
  PARTITA_CHECK(progress.steps >= 0 && progress.losses.size() == static_cast<size_t>(progress.steps),
                "a checkpoint needs one loss per step: ", progress.steps, " steps, ", progress.losses.size(),
                " losses");
}

void create_root(const fs::path& root) {
  std::error_code ec;
  fs::create_directories(root, ec);
  PARTITA_CHECK(!ec && fs::is_directory(root), "cannot create the checkpoint directory ", root.string(), ": ",
                ec.message(), "; choose a writable --checkpoint-dir");
}

// The checkpoint directory's current LATEST name ("" when none).
std::string latest_name(const fs::path& root) {
  if (!fs::exists(root / kLatest)) return "";
  std::string latest = read_text(root / kLatest);
  while (!latest.empty() && (latest.back() == '\n' || latest.back() == ' ')) latest.pop_back();
  return latest;
}

// A fresh temporary step directory in `root` for the checkpoint after `steps` steps.
fs::path make_temp_step_dir(const fs::path& root, int steps) {
  PARTITA_CHECK(latest_name(root) != step_name(steps), "the checkpoint directory ", root.string(),
                " already holds a checkpoint at step ", steps,
                "; save a later step or use another directory");
  const fs::path tmp = root / (kTempPrefix + std::to_string(steps) + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  std::error_code ec;
  fs::create_directory(tmp, ec);
  PARTITA_CHECK(!ec, "cannot create ", tmp.string(), ": ", ec.message(),
                "; choose a writable --checkpoint-dir");
  return tmp;
}

// `tmp` holds the state files: adds plan.json and manifest.json, renames it into place, replaces LATEST and
// removes the checkpoints it does not keep (see Retention in the header) and what dead writers left
// (temporary names of this step or earlier).
void commit(const fs::path& root, const fs::path& tmp, const CheckpointIdentity& identity,
            const CheckpointProgress& progress, const Json& manifest, const CheckpointFaultHook& hook,
            int keep) {
  PARTITA_CHECK(keep >= 1, "keeping ", keep, " checkpoints: keep at least 1");
  const std::string name = step_name(progress.steps);
  write_synced(tmp / "plan.json", plan_to_json(identity.plan).dump(2) + "\n");
  write_synced(tmp / "manifest.json", manifest.dump(2) + "\n");
  sync_path(tmp, true);
  if (hook) hook("files_written");

  std::error_code ec;
  const fs::path final_dir = root / name;
  fs::remove_all(final_dir);  // not LATEST's (checked before): a leftover of a writer that died before commit
  fs::rename(tmp, final_dir, ec);
  PARTITA_CHECK(!ec, "cannot rename ", tmp.string(), " to ", final_dir.string(), ": ", ec.message());
  sync_path(root, true);
  if (hook) hook("before_commit");

  const fs::path latest_tmp = root / (std::string(kLatest) + ".tmp");
  write_synced(latest_tmp, name + "\n");
  fs::rename(latest_tmp, root / kLatest, ec);
  PARTITA_CHECK(!ec, "cannot rename ", latest_tmp.string(), " to ", (root / kLatest).string(), ": ",
                ec.message());
  sync_path(root, true);

  // Committed: checkpoints after this one and all but the `keep` newest up to it go, and temporary files of
  // this step or earlier (only partita's own names; a later step's shards, should any rank be ahead, stay).
  std::vector<int> earlier;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string n = entry.path().filename().string();
    const int s = committed_step(n);
    const int t = temp_step(n);
    if (s > progress.steps || (t >= 0 && t <= progress.steps)) fs::remove_all(entry.path(), ec);
    if (s >= 0 && s < progress.steps) earlier.push_back(s);
  }
  std::sort(earlier.rbegin(), earlier.rend());
  for (size_t i = static_cast<size_t>(keep - 1); i < earlier.size(); ++i)
    fs::remove_all(root / step_name(earlier[i]), ec);
}

// The shards a manifest lists (a version 1 manifest: its one state file, every tensor).
std::vector<CheckpointShard> manifest_shards(const Json& m) {
  std::vector<CheckpointShard> shards;
  if (m.value("version", 0) == 1) {
    CheckpointShard whole;
    whole.tensors = all_indices(m.at("tensors").get<size_t>());
    whole.file = m.value("state_file", "state.pt");
    whole.bytes = m.at("state_bytes").get<int64_t>();
    whole.fnv1a64 = m.at("state_fnv1a64").get<std::string>();
    shards.push_back(whole);
    return shards;
  }
  for (const auto& j : m.at("shards")) shards.push_back(checkpoint_shard_from_json(j));
  return shards;
}

// The shard process `rank` (-1: one process running the whole plan) reads.
CheckpointShard shard_for(const std::vector<CheckpointShard>& shards, int rank, const std::string& where,
                          const std::string& corrupt) {
  PARTITA_CHECK(!shards.empty(), "checkpoint ", where, " lists no state file", corrupt);
  if (shards.size() == 1 && shards[0].rank < 0) return shards[0];
  PARTITA_CHECK(
      rank >= 0, "checkpoint ", where, " was written by a pipeline of ", shards.size(),
      " processes (one state file per rank, each holding its stage); resume it the same way (partita "
      "launch -n ",
      shards.size(), ") or start a new --checkpoint-dir");
  for (const auto& s : shards) {
    if (s.rank == rank) return s;
  }
  PARTITA_FAIL("checkpoint ", where, " has no state file for rank ", rank, " (it was written by ",
               shards.size(),
               " processes); resume with the same number of processes or start a new --checkpoint-dir");
}

// Checks the shard's file against its description, loads the optimizer state and returns the saved module
// tensors it holds (checked against `tensors`' shapes and dtypes), in the order of shard.tensors; `draws`
// gets the random generators' states it keeps for `rank` (-1: the one process; none: empty). `hash_basis`:
// the FNV offset basis the checkpoint's version hashed its files from.
std::vector<torch::Tensor> read_state(const fs::path& where, const CheckpointShard& shard,
                                      const std::vector<torch::Tensor>& tensors,
                                      torch::optim::Optimizer& optimizer, const std::string& corrupt,
                                      int rank, uint64_t hash_basis, DrawStates& draws) {
  const fs::path state = where / shard.file;
  PARTITA_CHECK(shard.file.find('/') == std::string::npos && fs::exists(state), "checkpoint file ",
                state.string(), " is missing", corrupt);
  const auto bytes = static_cast<int64_t>(fs::file_size(state));
  PARTITA_CHECK(bytes == shard.bytes, "checkpoint file ", state.string(), " has ", bytes,
                " bytes but its manifest says ", shard.bytes, " (truncated or replaced)", corrupt);
  const std::string hash = file_hash(state, hash_basis);
  PARTITA_CHECK(hash == shard.fnv1a64, "checkpoint file ", state.string(), " has FNV-1a hash ", hash,
                " but its manifest says ", shard.fnv1a64, " (corrupt)", corrupt);

  std::vector<torch::Tensor> saved(shard.tensors.size());
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(state.string(), torch::Device(torch::kCPU));  // a GPU run saved device state
    torch::serialize::InputArchive tensor_archive;
    archive.read("tensors", tensor_archive);
    const auto keys = tensor_archive.keys();
    PARTITA_CHECK(keys.size() == shard.tensors.size(), "checkpoint file ", state.string(), " holds ",
                  keys.size(), " model tensors but its manifest lists ", shard.tensors.size(), corrupt);
    std::vector<bool> listed(tensors.size(), false);
    for (size_t k = 0; k < shard.tensors.size(); ++k) {
      const int64_t i = shard.tensors[k];
      PARTITA_CHECK(i >= 0 && i < static_cast<int64_t>(tensors.size()), "checkpoint ", where.string(),
                    " holds model tensor ", i, " but the model has ", tensors.size(),
                    "; resume with the same model or start a new --checkpoint-dir");
      // Read twice, it would leave another tensor (the file holds as many as the list) at the model's value.
      PARTITA_CHECK(!listed[static_cast<size_t>(i)], "checkpoint manifest in ", where.string(),
                    " lists model tensor ", i, " twice", corrupt);
      listed[static_cast<size_t>(i)] = true;
      const torch::Tensor& model_tensor = tensors[static_cast<size_t>(i)];
      tensor_archive.read(std::to_string(i), saved[k]);
      PARTITA_CHECK(
          saved[k].sizes() == model_tensor.sizes() && saved[k].scalar_type() == model_tensor.scalar_type(),
          "checkpoint ", where.string(), " holds model tensor ", i, " with shape ", saved[k].sizes(),
          " but the model's has ", model_tensor.sizes(),
          "; resume with the same model or start a new --checkpoint-dir");
    }
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    optimizer.load(optimizer_archive);
    // A shard is its rank's alone; a whole checkpoint keeps every rank's.
    draws = read_draws(archive, shard.rank >= 0 ? 0 : rank);
  } catch (const c10::Error& e) {
    PARTITA_FAIL("cannot read checkpoint file ", state.string(), ": ", first_line(e), corrupt);
  }
  return saved;
}

// The manifest of the checkpoint LATEST names in `dir` (checked: present, parseable, a partita manifest of a
// version this code reads), its step directory in `where`.
Json latest_manifest(const std::string& dir, fs::path& where) {
  const fs::path root(dir);
  PARTITA_CHECK(has_checkpoint(dir), "no checkpoint in ", dir, " (", (root / kLatest).string(),
                " is missing); run without --resume to start one, or give the directory of an earlier run");
  const std::string name = latest_name(root);
  const std::string corrupt =
      "; the checkpoint is damaged: restore the directory from a copy or start a new "
      "--checkpoint-dir";
  PARTITA_CHECK(name.rfind(kStepPrefix, 0) == 0 && name.find('/') == std::string::npos, "checkpoint file ",
                (root / kLatest).string(), " names '", name, "', not a step directory", corrupt);
  where = root / name;
  const fs::path manifest_path = where / "manifest.json";
  PARTITA_CHECK(fs::exists(manifest_path), "checkpoint ", where.string(), " has no manifest.json", corrupt);
  Json m;
  try {
    m = Json::parse(read_text(manifest_path));
  } catch (const std::exception& e) {
    PARTITA_FAIL("checkpoint manifest ", manifest_path.string(), " is not valid JSON (", first_line(e), ")",
                 corrupt);
  }
  PARTITA_CHECK(m.is_object() && m.contains("format") && m["format"] == kFormat, "file ",
                manifest_path.string(), " is not a partita checkpoint manifest", corrupt);
  // (A version that is not a whole number reads as 0, which no partita wrote.)
  const int64_t version =
      m.contains("version") && m["version"].is_number_integer() ? m["version"].get<int64_t>() : 0;
  PARTITA_CHECK(version >= 1 && version <= kCheckpointVersion, "checkpoint ", where.string(),
                " has format version ", version, " but this partita reads versions 1 to ", kCheckpointVersion,
                "; resume with the partita that wrote it or start a new --checkpoint-dir");
  return m;
}

}  // namespace

std::string draws_to_bytes(const DrawStates& draws) {
  torch::serialize::OutputArchive archive;
  write_draws(archive, draws);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

DrawStates draws_from_bytes(const std::string& bytes) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(bytes.data(), bytes.size(), torch::Device(torch::kCPU));
    return read_draws(archive);
  } catch (const c10::Error& e) {
    PARTITA_FAIL("cannot read ", bytes.size(), " bytes of random generator states: ", first_line(e),
                 "; every rank of a job must run the same partita");
  }
}

std::string model_fingerprint(const LoadedModel& model) {
  Fnv fnv{kShortFnvBasis};
  for (const Node& n : model.ir.nodes()) {
    fnv.mix(n.op);
    fnv.mix("\n");
  }
  const auto& params = model.ir.parameters();
  for (size_t i = 0; i < model.parameters.size(); ++i) {
    const torch::Tensor& t = model.parameters[i];
    fnv.mix(i < params.size() ? params[i].name : std::string("?"));
    for (int64_t d : t.sizes()) fnv.mix(":" + std::to_string(d));
    fnv.mix(std::string(" ") + c10::toString(t.scalar_type()) + (t.requires_grad() ? " grad\n" : "\n"));
  }
  return fnv.hex();
}

bool has_checkpoint(const std::string& dir) { return fs::exists(fs::path(dir) / kLatest); }

Json checkpoint_shard_to_json(const CheckpointShard& shard) {
  Json j;
  j["rank"] = shard.rank < 0 ? Json() : Json(shard.rank);
  j["file"] = shard.file;
  j["bytes"] = shard.bytes;
  j["fnv1a64"] = shard.fnv1a64;
  j["tensors"] = shard.tensors;
  return j;
}

CheckpointShard checkpoint_shard_from_json(const Json& j) {
  CheckpointShard shard;
  try {
    shard.rank = j.at("rank").is_null() ? -1 : j.at("rank").get<int>();
    shard.file = j.at("file").get<std::string>();
    shard.bytes = j.at("bytes").get<int64_t>();
    shard.fnv1a64 = j.at("fnv1a64").get<std::string>();
    shard.tensors = j.at("tensors").get<std::vector<int64_t>>();
  } catch (const nlohmann::json::exception& e) {
    PARTITA_FAIL("a checkpoint shard description lacks a field (", first_line(e), "): ", short_dump(j));
  }
  return shard;
}

void save_checkpoint(const std::string& dir, const CheckpointIdentity& identity,
                     const CheckpointProgress& progress, const std::vector<torch::Tensor>& tensors,
                     const torch::optim::Optimizer& optimizer, const CheckpointFaultHook& hook, int keep) {
  check_progress(progress);
  // Written at once: the live tensors need no copies.
  CheckpointSnapshot now{
      progress,
      tensors.size(),
      state_archive(tensors, all_indices(tensors.size()), optimizer, /*copy=*/false, progress.draws),
      {}};
  write_checkpoint(dir, identity, now, hook, keep);
}

CheckpointSnapshot snapshot_checkpoint(const CheckpointProgress& progress,
                                       const std::vector<torch::Tensor>& tensors,
                                       torch::optim::Optimizer& optimizer) {
  check_progress(progress);
  CheckpointSnapshot snapshot{
      progress,
      tensors.size(),
      state_archive(tensors, all_indices(tensors.size()), optimizer, /*copy=*/true, progress.draws),
      {}};
  copy_state_tensors(optimizer);  // the archive keeps the state tensors as they are now
  return snapshot;
}

void write_checkpoint(const std::string& dir, const CheckpointIdentity& identity,
                      const CheckpointSnapshot& snapshot, const CheckpointFaultHook& hook, int keep) {
  check_progress(snapshot.progress);
  PARTITA_ASSERT(snapshot.archive != nullptr, "checkpoint snapshot without its state");
  const fs::path root(dir);
  create_root(root);
  const fs::path tmp = make_temp_step_dir(root, snapshot.progress.steps);
  CheckpointShard whole;
  whole.tensors = all_indices(snapshot.tensors);
  whole.file = "state.pt";
  const WrittenState written = write_state(tmp / whole.file, *snapshot.archive);
  whole.bytes = written.bytes;
  whole.fnv1a64 = written.fnv1a64;
  commit(root, tmp, identity, snapshot.progress,
         make_manifest(identity, snapshot.progress, snapshot.tensors, {whole}), hook, keep);
}

BackgroundCheckpointWriter::~BackgroundCheckpointWriter() {
  try {
    wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "partita: error: a checkpoint saved in the background failed: %s\n", e.what());
  }
}

void BackgroundCheckpointWriter::submit(std::function<void()> save) {
  wait();
  pending_ = std::async(std::launch::async, std::move(save));
}

void BackgroundCheckpointWriter::wait() {
  if (!pending_.valid()) return;
  std::future<void> done = std::move(pending_);
  done.get();
}

namespace {

// Writes a shard's state file under its temporary name in `dir` (synced) and describes it.
CheckpointShard write_shard_file(const std::string& dir, int steps, int rank,
                                 const std::vector<int64_t>& held, torch::serialize::OutputArchive& archive) {
  PARTITA_ASSERT(rank >= 0 && steps >= 0, "a shard needs a rank and a step count");
  const fs::path root(dir);
  create_root(root);
  const fs::path path = root / shard_temp_name(steps, rank);
  CheckpointShard shard;
  const WrittenState written = write_state(path, archive);
  shard.bytes = written.bytes;
  shard.fnv1a64 = written.fnv1a64;
  sync_path(root, true);
  shard.rank = rank;
  shard.tensors = held;
  shard.file = "rank-" + std::to_string(rank) + ".pt";
  return shard;
}

}  // namespace

CheckpointShard write_checkpoint_shard(const std::string& dir, int steps, int rank,
                                       const std::vector<torch::Tensor>& tensors,
                                       const std::vector<int64_t>& held,
                                       const torch::optim::Optimizer& optimizer, const DrawStates& draws) {
  return write_shard_file(dir, steps, rank, held,
                          *state_archive(tensors, held, optimizer, /*copy=*/false, draws));
}

CheckpointSnapshot snapshot_checkpoint_shard(const CheckpointProgress& progress,
                                             const std::vector<torch::Tensor>& tensors,
                                             const std::vector<int64_t>& held,
                                             torch::optim::Optimizer& optimizer) {
  check_progress(progress);
  CheckpointSnapshot snapshot{progress, held.size(),
                              state_archive(tensors, held, optimizer, /*copy=*/true, progress.draws), held};
  copy_state_tensors(optimizer);  // the archive keeps the state tensors as they are now
  return snapshot;
}

CheckpointShard write_checkpoint_shard(const std::string& dir, int rank, const CheckpointSnapshot& snapshot) {
  PARTITA_ASSERT(snapshot.archive != nullptr, "checkpoint snapshot without its state");
  return write_shard_file(dir, snapshot.progress.steps, rank, snapshot.held, *snapshot.archive);
}

void commit_checkpoint_shards(const std::string& dir, const CheckpointIdentity& identity,
                              const CheckpointProgress& progress, const std::vector<CheckpointShard>& shards,
                              const CheckpointFaultHook& hook, int keep) {
  check_progress(progress);
  const fs::path root(dir);
  for (size_t r = 0; r < shards.size(); ++r) {
    PARTITA_CHECK(shards[r].rank == static_cast<int>(r), "checkpoint after step ", progress.steps, ": shard ",
                  r, " comes from rank ", shards[r].rank, "; every rank must post its own, in order");
    const fs::path written = root / shard_temp_name(progress.steps, static_cast<int>(r));
    PARTITA_CHECK(fs::exists(written), "checkpoint after step ", progress.steps, ": rank ", r,
                  "'s state file ", written.string(),
                  " is missing; every rank must reach the same --checkpoint-dir (a shared directory when the "
                  "ranks run on several machines)");
    const auto bytes = static_cast<int64_t>(fs::file_size(written));
    PARTITA_CHECK(bytes == shards[r].bytes, "checkpoint after step ", progress.steps, ": rank ", r,
                  "'s state file ", written.string(), " has ", bytes, " bytes but the rank wrote ",
                  shards[r].bytes, "; is another job using --checkpoint-dir ", dir, "?");
  }
  PARTITA_CHECK(!shards.empty(), "a sharded checkpoint needs at least one shard");
  const fs::path tmp = make_temp_step_dir(root, progress.steps);
  for (const auto& shard : shards) {
    std::error_code ec;
    const fs::path from = root / shard_temp_name(progress.steps, shard.rank);
    fs::rename(from, tmp / shard.file, ec);
    PARTITA_CHECK(!ec, "cannot rename ", from.string(), " to ", (tmp / shard.file).string(), ": ",
                  ec.message());
  }
  // The ranks' tensors together are the module's (every tensor is read by some stage or held by rank 0).
  std::set<int64_t> held;
  for (const auto& shard : shards) held.insert(shard.tensors.begin(), shard.tensors.end());
  const size_t tensors = held.size();
  PARTITA_CHECK(held.empty() || *held.rbegin() == static_cast<int64_t>(tensors) - 1, "checkpoint after step ",
                progress.steps, ": the ranks' shards hold ", tensors, " module tensors with indices up to ",
                held.empty() ? 0 : *held.rbegin(), "; every module tensor must be held by some rank");
  commit(root, tmp, identity, progress, make_manifest(identity, progress, tensors, shards), hook, keep);
}

std::vector<int64_t> stage_tensor_indices(const LoadedModel& model, const Plan& plan, int stage) {
  PARTITA_ASSERT(stage >= 0 && stage < static_cast<int>(plan.stages.size()), "stage ", stage,
                 " out of range");
  const std::vector<std::vector<int>> readers = plan.parameter_stages(model.ir);
  std::vector<int64_t> held;
  for (size_t i = 0; i < readers.size(); ++i) {
    const bool read = std::find(readers[i].begin(), readers[i].end(), stage) != readers[i].end();
    if (read || (readers[i].empty() && stage == 0)) held.push_back(static_cast<int64_t>(i));
  }
  return held;
}

CheckpointProgress load_checkpoint(const std::string& dir, const CheckpointIdentity& identity,
                                   const std::vector<torch::Tensor>& tensors,
                                   torch::optim::Optimizer& optimizer, int rank) {
  fs::path where;
  const Json m = latest_manifest(dir, where);
  const fs::path manifest_path = where / "manifest.json";
  const std::string corrupt =
      "; the checkpoint is damaged: restore the directory from a copy or start a new "
      "--checkpoint-dir";
  CheckpointProgress progress;
  std::vector<CheckpointShard> shards;
  try {
    check_identity(m, identity, where.string());
    progress.steps = m.at("steps").get<int>();
    progress.losses = m.at("losses").get<std::vector<double>>();
    shards = manifest_shards(m);
  } catch (const nlohmann::json::exception& e) {
    PARTITA_FAIL("checkpoint manifest ", manifest_path.string(), " lacks a field (", first_line(e), ")",
                 corrupt);
  }
  PARTITA_CHECK(progress.steps >= 0 && progress.losses.size() == static_cast<size_t>(progress.steps),
                "checkpoint manifest ", manifest_path.string(), " has ", progress.losses.size(),
                " losses for ", progress.steps, " steps", corrupt);

  const CheckpointShard shard = shard_for(shards, rank, where.string(), corrupt);
  const std::vector<torch::Tensor> saved =
      read_state(where, shard, tensors, optimizer, corrupt, rank,
                 m.value("version", 0) <= 2 ? kShortFnvBasis : kFnvBasis, progress.draws);
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < shard.tensors.size(); ++k)
    tensors[static_cast<size_t>(shard.tensors[k])].copy_(saved[k]);
  return progress;
}

Plan checkpoint_plan(const std::string& dir) {
  fs::path where;
  const Json m = latest_manifest(dir, where);
  try {
    return plan_from_json(m.at("plan"));
  } catch (const std::exception& e) {
    PARTITA_FAIL("checkpoint manifest ", (where / "manifest.json").string(), " has no readable plan (",
                 first_line(e),
                 "); the checkpoint is damaged: restore the directory from a copy or start a new "
                 "--checkpoint-dir");
  }
}

}  // namespace partita

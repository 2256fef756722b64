#include "partita/runtime/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <torch/optim.h>
#include <torch/serialize.h>

#include "partita/core/error.h"
#include "partita/core/json_io.h"
#include "partita/search/plan_json.h"

namespace partita {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "partita.checkpoint";
constexpr const char* kLatest = "LATEST";
constexpr const char* kStepPrefix = "step-";
constexpr const char* kTempPrefix = ".tmp-step-";
// Plan keys that describe predictions or where the plan came from, not how it runs.
const char* const kPlanKeysNotCompared[] = {"predicted_step_ms", "predicted_peak_bytes", "predicted_joules",
                                            "prediction", "source"};

// FNV-1a 64: stable across platforms and runs, unlike std::hash.
struct Fnv {
  uint64_t h = 1469598103934665603ULL;
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

std::string file_hash(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  PARTITA_CHECK(in.good(), "cannot read checkpoint file ", path.string());
  Fnv fnv;
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

// Writes state.pt into `dir` (synced) and returns the manifest that describes the checkpoint.
Json write_state(const fs::path& dir, const CheckpointIdentity& identity, const CheckpointProgress& progress,
                 const std::vector<torch::Tensor>& tensors, const torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  {
    torch::serialize::OutputArchive tensor_archive;
    for (size_t i = 0; i < tensors.size(); ++i) {
      tensor_archive.write(std::to_string(i), tensors[i].detach().to(torch::kCPU));
    }
    archive.write("tensors", tensor_archive);
    torch::serialize::OutputArchive optimizer_archive;
    optimizer.save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
  }
  const fs::path state = dir / "state.pt";
  try {
    archive.save_to(state.string());
  } catch (const c10::Error& e) {
    PARTITA_FAIL("cannot write ", state.string(), ": ", first_line(e), "; check space and permissions");
  }
  sync_path(state, false);

  Json m;
  m["format"] = kFormat;
  m["version"] = kCheckpointVersion;
  m["steps"] = progress.steps;
  m["losses"] = progress.losses;
  m["model_path"] = identity.model_path;
  m["model_file_bytes"] = identity.model_file_bytes;
  m["model_fingerprint"] = identity.model_fingerprint;
  m["tensors"] = tensors.size();
  m["inputs"] = identity.inputs;
  m["loss"] = identity.loss;
  m["learning_rate"] = identity.learning_rate;
  m["state_file"] = "state.pt";
  m["state_bytes"] = static_cast<int64_t>(fs::file_size(state));
  m["state_fnv1a64"] = file_hash(state);
  m["plan"] = plan_to_json(identity.plan);
  return m;
}

// Checks state.pt against the manifest, loads the optimizer state and returns the saved module tensors
// (checked against `tensors`' shapes and dtypes).
std::vector<torch::Tensor> read_state(const fs::path& where, const Json& m,
                                      const std::vector<torch::Tensor>& tensors,
                                      torch::optim::Optimizer& optimizer, const std::string& corrupt) {
  const fs::path state = where / m.value("state_file", "state.pt");
  PARTITA_CHECK(fs::exists(state), "checkpoint file ", state.string(), " is missing", corrupt);
  const auto bytes = static_cast<int64_t>(fs::file_size(state));
  const int64_t want_bytes = m.value("state_bytes", int64_t{-1});
  PARTITA_CHECK(bytes == want_bytes, "checkpoint file ", state.string(), " has ", bytes,
                " bytes but its manifest says ", want_bytes, " (truncated or replaced)", corrupt);
  const std::string hash = file_hash(state);
  PARTITA_CHECK(hash == m.value("state_fnv1a64", ""), "checkpoint file ", state.string(), " has FNV-1a hash ",
                hash, " but its manifest says ", m.value("state_fnv1a64", "?"), " (corrupt)", corrupt);

  std::vector<torch::Tensor> saved(tensors.size());
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(state.string(), torch::Device(torch::kCPU));  // a GPU run saved device state
    torch::serialize::InputArchive tensor_archive;
    archive.read("tensors", tensor_archive);
    const auto keys = tensor_archive.keys();
    PARTITA_CHECK(keys.size() == tensors.size(), "checkpoint ", where.string(), " holds ", keys.size(),
                  " model tensors but the model has ", tensors.size(),
                  "; resume with the same model or start a new --checkpoint-dir");
    for (size_t i = 0; i < tensors.size(); ++i) {
      tensor_archive.read(std::to_string(i), saved[i]);
      PARTITA_CHECK(
          saved[i].sizes() == tensors[i].sizes() && saved[i].scalar_type() == tensors[i].scalar_type(),
          "checkpoint ", where.string(), " holds model tensor ", i, " with shape ", saved[i].sizes(),
          " but the model's has ", tensors[i].sizes(),
          "; resume with the same model or start a new --checkpoint-dir");
    }
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    optimizer.load(optimizer_archive);
  } catch (const c10::Error& e) {
    PARTITA_FAIL("cannot read checkpoint file ", state.string(), ": ", first_line(e), corrupt);
  }
  return saved;
}

}  // namespace

std::string model_fingerprint(const LoadedModel& model) {
  Fnv fnv;
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

void save_checkpoint(const std::string& dir, const CheckpointIdentity& identity,
                     const CheckpointProgress& progress, const std::vector<torch::Tensor>& tensors,
                     const torch::optim::Optimizer& optimizer, const CheckpointFaultHook& hook) {
  PARTITA_CHECK(progress.steps >= 0 && progress.losses.size() == static_cast<size_t>(progress.steps),
                "a checkpoint needs one loss per step: ", progress.steps, " steps, ", progress.losses.size(),
                " losses");
  const fs::path root(dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  PARTITA_CHECK(!ec && fs::is_directory(root), "cannot create the checkpoint directory ", dir, ": ",
                ec.message(), "; choose a writable --checkpoint-dir");
  const std::string name = step_name(progress.steps);
  std::string latest;
  if (has_checkpoint(dir)) latest = read_text(root / kLatest);
  while (!latest.empty() && (latest.back() == '\n' || latest.back() == ' ')) latest.pop_back();
  PARTITA_CHECK(latest != name, "the checkpoint directory ", dir, " already holds a checkpoint at step ",
                progress.steps, "; save a later step or use another directory");

  const fs::path tmp =
      root / (kTempPrefix + std::to_string(progress.steps) + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directory(tmp, ec);
  PARTITA_CHECK(!ec, "cannot create ", tmp.string(), ": ", ec.message(),
                "; choose a writable --checkpoint-dir");

  const Json m = write_state(tmp, identity, progress, tensors, optimizer);
  write_synced(tmp / "plan.json", plan_to_json(identity.plan).dump(2) + "\n");
  write_synced(tmp / "manifest.json", m.dump(2) + "\n");
  sync_path(tmp, true);
  if (hook) hook("files_written");

  const fs::path final_dir = root / name;
  fs::remove_all(final_dir);  // not LATEST's (checked above): a leftover of a writer that died before commit
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

  // Committed: older checkpoints and leftovers of dead writers go (only partita's own names).
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string n = entry.path().filename().string();
    const bool ours = n.rfind(kStepPrefix, 0) == 0 || n.rfind(kTempPrefix, 0) == 0;
    if (ours && n != name) fs::remove_all(entry.path(), ec);
  }
}

CheckpointProgress load_checkpoint(const std::string& dir, const CheckpointIdentity& identity,
                                   const std::vector<torch::Tensor>& tensors,
                                   torch::optim::Optimizer& optimizer) {
  const fs::path root(dir);
  PARTITA_CHECK(has_checkpoint(dir), "no checkpoint in ", dir, " (", (root / kLatest).string(),
                " is missing); run without --resume to start one, or give the directory of an earlier run");
  std::string name = read_text(root / kLatest);
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  const std::string corrupt =
      "; the checkpoint is damaged: restore the directory from a copy or start a new "
      "--checkpoint-dir";
  PARTITA_CHECK(name.rfind(kStepPrefix, 0) == 0 && name.find('/') == std::string::npos, "checkpoint file ",
                (root / kLatest).string(), " names '", name, "', not a step directory", corrupt);
  const fs::path where = root / name;
  const fs::path manifest_path = where / "manifest.json";
  PARTITA_CHECK(fs::exists(manifest_path), "checkpoint ", where.string(), " has no manifest.json", corrupt);
  Json m;
  try {
    m = Json::parse(read_text(manifest_path));
  } catch (const std::exception& e) {
    PARTITA_FAIL("checkpoint manifest ", manifest_path.string(), " is not valid JSON (", first_line(e), ")",
                 corrupt);
  }
  PARTITA_CHECK(m.is_object() && m.value("format", "") == kFormat, "file ", manifest_path.string(),
                " is not a partita checkpoint manifest", corrupt);
  PARTITA_CHECK(m.value("version", 0) == kCheckpointVersion, "checkpoint ", where.string(),
                " has format version ", m.value("version", 0), " but this partita reads version ",
                kCheckpointVersion,
                "; resume with the partita that wrote it or start a new --checkpoint-dir");
  CheckpointProgress progress;
  try {
    check_identity(m, identity, where.string());
    progress.steps = m.at("steps").get<int>();
    progress.losses = m.at("losses").get<std::vector<double>>();
  } catch (const nlohmann::json::exception& e) {
    PARTITA_FAIL("checkpoint manifest ", manifest_path.string(), " lacks a field (", first_line(e), ")",
                 corrupt);
  }
  PARTITA_CHECK(progress.steps >= 0 && progress.losses.size() == static_cast<size_t>(progress.steps),
                "checkpoint manifest ", manifest_path.string(), " has ", progress.losses.size(),
                " losses for ", progress.steps, " steps", corrupt);

  const std::vector<torch::Tensor> saved = read_state(where, m, tensors, optimizer, corrupt);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].copy_(saved[i]);
  return progress;
}

}  // namespace partita

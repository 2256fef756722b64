#include "planning_inputs.h"

#include <algorithm>
#include <barrier>
#include <cctype>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/core/log.h"
#include "partita/core/own_thread.h"
#include "partita/cost/corun.h"
#include "partita/graph/analysis.h"
#include "partita/hardware/cluster_file.h"
#include "partita/hardware/cpu_info.h"
#include "partita/hardware/cpu_spec.h"
#include "partita/hardware/machine_profile.h"
#include "partita/hardware/nvml.h"
#include "partita/hardware/quantity_parse.h"
#include "partita/runtime/blas_threads.h"
#include "partita/runtime/device_binding.h"
#include "partita/runtime/optimizer.h"
#include "partita/search/device_slowdown.h"
#include "partita/search/model_spec.h"
#include "partita/torch_bridge/batch_check.h"
#include "partita/torch_bridge/executor.h"
#include "partita/torch_bridge/gradient_check.h"
#include "partita/torch_bridge/machine_fingerprint.h"
#include "partita/torch_bridge/model.h"
#include "partita/torch_bridge/op_profiler.h"
#include "partita/torch_bridge/timing.h"

namespace partita::app {

namespace {

std::string absolute(const std::string& path) {
  return path.empty() ? path : std::filesystem::absolute(path).lexically_normal().string();
}

// The database profile of a GPU NVML names ("NVIDIA H200" -> "H200"): exact name, the name without the
// vendor, else the longest profile name contained in it. nullptr when none matches.
const DeviceSpec* gpu_profile(const HardwareDb& db, const std::string& nvml_name) {
  if (const DeviceSpec* s = db.find_device(nvml_name)) return s;
  const std::string bare = nvml_name.starts_with("NVIDIA ") ? nvml_name.substr(7) : nvml_name;
  if (const DeviceSpec* s = db.find_device(bare)) return s;
  const DeviceSpec* best = nullptr;
  for (const auto& d : db.devices) {
    if (d.kind == DeviceKind::kCuda && bare.find(d.name) != std::string::npos &&
        (!best || d.name.size() > best->name.size())) {
      best = &d;
    }
  }
  return best;
}

struct LocalHardware {
  DeviceSpec cpu;
  std::vector<DeviceSpec> gpus;  // index = cuda index; a GPU without a profile is left out (with a warning)
  std::vector<std::string> gpu_ids;
};

LocalHardware discover_local(const HardwareDb& db) {
  LocalHardware hw;
  hw.cpu = cpu_device_spec(discover_cpu("/"), &db);
  const Nvml nvml;
  for (int i = 0; i < nvml.device_count(); ++i) {
    const NvmlDeviceInfo info = nvml.device_info(i);
    const DeviceSpec* profile = gpu_profile(db, info.name);
    if (!profile) {
      log_warning(
          fmt::format("GPU cuda:{} '{}' has no profile in {}; it is left out of planning (add it there)", i,
                      info.name, db.path));
      continue;
    }
    DeviceSpec spec = *profile;
    if (info.memory_total.value() > 0) spec.memory = info.memory_total;
    hw.gpus.push_back(spec);
    hw.gpu_ids.push_back("cuda:" + std::to_string(i));
  }
  return hw;
}

std::string available_ids(const LocalHardware& hw) {
  std::string out = "cpu";
  for (int c = 0; c < hw.cpu.cores; ++c) out += ", cpu:" + std::to_string(c);
  for (const auto& id : hw.gpu_ids) out += ", " + id;
  return out;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(std::remove_if(item.begin(), item.end(), [](unsigned char ch) { return std::isspace(ch); }),
               item.end());
    PARTITA_CHECK(!item.empty(), "--devices '", text,
                  "' has an empty entry; write ids separated by commas, like cpu:0,cpu:1");
    out.push_back(item);
  }
  return out;
}

// The cached measured profile of this machine (`partita profile`), or nullopt. Never measures: a full profile
// takes minutes, and the op profiler measures what the plan needs anyway.
std::optional<MachineProfile> cached_machine_profile() {
  const MachineFingerprint fp = machine_fingerprint();
  const std::string path = machine_profile_path(fp.key());
  if (!std::filesystem::exists(path)) return std::nullopt;
  try {
    MachineProfile p = machine_profile_from_json(read_json_file(path));
    if (p.fingerprint == fp.text()) return p;
  } catch (const Error& e) {
    static bool warned = false;  // once per process: optimize plans many times
    if (!warned) log_warning(std::string("ignoring the unreadable machine profile: ") + e.what());
    warned = true;
  }
  return std::nullopt;
}

// Measured performance figures of the profile's CPU device with `cores` threads (the whole "cpu" for all
// cores, else a one-core group scaled) onto `spec`, keeping its name, memory size and power figures.
void use_measured(DeviceSpec& spec, const MachineProfile& profile, int total_cores) {
  const ProfiledDevice* whole = profile.find("cpu");
  const ProfiledDevice* core = profile.find("cpu:0");
  const ProfiledDevice* from = spec.cores >= total_cores ? whole : core;
  if (!from) return;
  DeviceSpec measured = from->spec;
  if (from == core && spec.cores > 1) measured = cpu_group_spec(whole ? whole->spec : core->spec, spec.cores);
  spec.peak_flops = measured.peak_flops;
  spec.memory_bandwidth = measured.memory_bandwidth;
  spec.op_overhead = measured.op_overhead;
  spec.flops_efficiency = measured.flops_efficiency;
  spec.op_class_fits = measured.op_class_fits;
  spec.op_class_backward_fits = measured.op_class_backward_fits;
  spec.source = "measured (partita profile, " + profile.date + ")";
}

// Runs `fn` on a new thread bound like an engine worker on `device`; rethrows what it throws.
template <typename Fn>
void on_bound_thread(const std::string& device, Fn fn) {
  run_on_own_thread([&] {
    apply_to_current_thread(bind_device(device));
    fn();
  });
}

void collect_float(const c10::IValue& v, std::vector<torch::Tensor>& out) {
  if (v.isTensor()) {
    if (v.toTensor().is_floating_point() && v.toTensor().requires_grad()) out.push_back(v.toTensor());
  } else if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) collect_float(e, out);
  } else if (v.isList()) {
    for (const auto& e : v.toListRef()) collect_float(e, out);
  }
}

// One forward (inference) or forward + backward (training) of the whole model. Gradients are returned by
// autograd::grad, not accumulated, so two threads can run it on the same parameters at once.
void model_step(const Executor& executor, const std::vector<c10::IValue>& inputs, bool train) {
  if (!train) {
    torch::NoGradGuard no_grad;
    (void)executor.run(inputs);
    return;
  }
  std::vector<torch::Tensor> outputs;
  for (const auto& v : executor.run(inputs)) collect_float(v, outputs);
  if (outputs.empty()) return;
  torch::Tensor loss = outputs[0].sum();
  for (size_t i = 1; i < outputs.size(); ++i) loss = loss + outputs[i].sum();
  std::vector<torch::Tensor> params;
  for (const auto& p : executor.parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  (void)torch::autograd::grad({loss}, params, {}, false, false, /*allow_unused=*/true);
}

// Co-run measurement for cost/corun.h: the model's own step (model_step) on devices[0] (the cost row's
// device) alone, then on every device in `devices` at once, each worker on its own thread bound like an
// engine worker and every step started together (a barrier), as a synchronous plan's workers run.
// kCoRunRounds rounds alternate the two so drift hits both alike; each part lasts at least kCoRunWindow and
// kCoRunMinSteps steps: 2 s at least in all, as long as one of this VM's per-core slow stretches (0.5-4 s),
// so the figure varies between runs (cost/corun.h).
constexpr int kCoRunRounds = 5;
constexpr int kCoRunMinSteps = 2;
constexpr double kCoRunWindow = 0.2;  // seconds

std::vector<CoRunRound> measure_corun(const Executor& executor, const std::vector<c10::IValue>& inputs,
                                      bool train, const std::vector<std::string>& devices) {
  using Clock = std::chrono::steady_clock;
  const auto seconds_since = [](Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  std::vector<CoRunRound> rounds(kCoRunRounds);
  for (CoRunRound& round : rounds) {
    on_bound_thread(devices[0], [&] {
      model_step(executor, inputs, train);  // a new thread's first step starts its OpenMP team
      const auto window_start = Clock::now();
      for (int i = 0; i < kCoRunMinSteps || seconds_since(window_start) < kCoRunWindow; ++i) {
        const auto t0 = Clock::now();
        model_step(executor, inputs, train);
        round.alone.push_back(seconds_since(t0));
      }
    });
    const int steps =
        std::max(kCoRunMinSteps, static_cast<int>(std::ceil(kCoRunWindow / median_of(round.alone))));
    std::vector<std::vector<double>> times(static_cast<size_t>(steps), std::vector<double>(devices.size()));
    std::barrier start(static_cast<std::ptrdiff_t>(devices.size()));
    std::vector<std::exception_ptr> errors(devices.size());
    std::vector<std::thread> workers;
    for (size_t w = 0; w < devices.size(); ++w) {
      workers.emplace_back([&, w] {
        try {
          apply_to_current_thread(bind_device(devices[w]));
          model_step(executor, inputs, train);
          for (int k = 0; k < steps; ++k) {
            start.arrive_and_wait();
            const auto t0 = Clock::now();
            model_step(executor, inputs, train);
            times[static_cast<size_t>(k)][w] = seconds_since(t0);
          }
        } catch (...) {
          errors[w] = std::current_exception();
          start.arrive_and_drop();  // the others go on without this worker instead of waiting for it
        }
      });
    }
    for (auto& t : workers) t.join();
    for (const auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
    round.together = std::move(times);
  }
  return rounds;
}

void scale_times(std::vector<NodeTimes>& times, double factor) {
  for (auto& t : times) {
    t.forward = t.forward * factor;
    t.backward = t.backward * factor;
    t.forward_fixed = t.forward_fixed * factor;
    t.backward_fixed = t.backward_fixed * factor;
  }
}

}  // namespace

Cluster local_cluster(const std::string& devices, const HardwareDb& db) {
  const LocalHardware hw = discover_local(db);
  std::vector<std::string> ids;
  if (devices.empty()) {
    for (int c = 0; c < hw.cpu.cores; ++c) ids.push_back("cpu:" + std::to_string(c));
    ids.insert(ids.end(), hw.gpu_ids.begin(), hw.gpu_ids.end());
  } else {
    ids = split_list(devices);
  }
  Cluster cluster;
  cluster.name = "localhost";
  cluster.intra_node_link = shared_memory_link(hw.cpu);
  // Host <-> GPU traffic crosses PCIe; the H100/H200 generation sits on PCIe 5 (about 55 GB/s measured
  // pinned).
  std::vector<bool> core_used(static_cast<size_t>(std::max(hw.cpu.cores, 1)), false);
  for (const auto& text : ids) {
    const DeviceId id = parse_device_id(text);
    const std::string name = id.to_string();
    PARTITA_CHECK(cluster.index_of(name) < 0, "--devices lists ", name, " twice; name each device once");
    if (id.kind == DeviceKind::kCpu) {
      const int first = id.index < 0 ? 0 : id.index;
      const int last = id.index < 0 ? hw.cpu.cores - 1 : id.last_core;
      PARTITA_CHECK(last < hw.cpu.cores, "device ", name, " is not here: this machine has ",
                    available_ids(hw), "; describe other hardware with --cluster FILE.yaml");
      for (int c = first; c <= last; ++c) {
        PARTITA_CHECK(
            !core_used[static_cast<size_t>(c)], "device ", name, " shares core ", c,
            " with another device in --devices; give each core to one device (e.g. cpu:0,cpu:1 or cpu)");
        core_used[static_cast<size_t>(c)] = true;
      }
      DeviceSpec spec = id.index < 0 ? hw.cpu : cpu_group_spec(hw.cpu, last - first + 1);
      cluster.devices.push_back(ClusterDevice{name, "localhost", spec});
      continue;
    }
    const auto it = std::find(hw.gpu_ids.begin(), hw.gpu_ids.end(), name);
    PARTITA_CHECK(id.kind == DeviceKind::kCuda && it != hw.gpu_ids.end(), "device ", name,
                  " is not here: this machine has ", available_ids(hw),
                  "; describe other hardware with --cluster FILE.yaml");
    const DeviceSpec& spec = hw.gpus[static_cast<size_t>(it - hw.gpu_ids.begin())];
    const bool pcie5 =
        spec.name.find("H100") != std::string::npos || spec.name.find("H200") != std::string::npos;
    const LinkSpec host = db.link(pcie5 ? "PCIe 5.0 x16" : "PCIe 4.0 x16");
    for (const auto& other : cluster.devices) cluster.links.push_back(ClusterLink{other.id, name, host});
    cluster.devices.push_back(ClusterDevice{name, "localhost", spec});
  }
  return cluster;
}

Bytes parse_memory_limit(const std::string& text) {
  const bool digits =
      !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
  if (digits) {
    try {
      return Bytes(std::stoll(text));
    } catch (const std::exception&) {
      PARTITA_FAIL("--memory-limit '", text, "' is too large; write it with a unit, like 80GiB");
    }
  }
  const auto b = parse_bytes(text);
  PARTITA_CHECK(b && b->value() > 0, "--memory-limit '", text,
                "' is not a memory size; write bytes or a size like ", kBytesExample, ", 4GiB or 512MB");
  return *b;
}

Graph load_source_graph(const PlanSource& source) {
  const bool has_model = !source.model.empty(), has_spec = !source.model_spec.empty();
  PARTITA_CHECK(has_model != has_spec,
                has_model ? "give either MODEL.pt or --model-spec, not both"
                          : "nothing to plan: give MODEL.pt --input SPEC... or --model-spec FILE.yaml");
  if (has_spec) {
    PARTITA_CHECK(source.batch >= 1, "--batch is ", source.batch,
                  "; give a positive number of samples per step");
    log_info(fmt::format("building {} at batch {}", source.model_spec, source.batch));
    return build_model_graph(load_model_spec(source.model_spec), source.batch);
  }
  return std::move(load_source_model(source, Mode::kInference).ir);
}

LoadedModel load_source_model(const PlanSource& source, Mode mode) {
  PARTITA_CHECK(!source.model.empty(),
                "nothing to plan: give MODEL.pt --input SPEC... or --model-spec FILE.yaml");
  PARTITA_CHECK(!source.inputs.empty(),
                "--input is required with a TorchScript model: one spec per forward() argument, "
                "like --input 32x64");
  std::vector<InputSpec> specs;
  for (const auto& s : source.inputs) specs.push_back(parse_input_spec(s));
  check_inputs_share_batch(specs);
  log_info(fmt::format("loading {}", source.model));
  LoadedModel model = load_model(source.model, module_mode(mode), specs);
  annotate_shapes(model, specs);
  if (mode == Mode::kTraining) check_trainable(model, specs);
  return model;
}

// The links between the processes of a launched plan (search/process_layout.h), as the runtime will talk:
// those a cluster file names (process_link, process_collective_link); else through shared memory (what
// `partita profile` measured, else estimates from the cluster's first CPU), or with PARTITA_SHARED_MEMORY=0
// through Gloo's loopback TCP (the profile's all-reduce fit for both, else the database's "loopback TCP").
ProcessLinks links_between_processes(const std::optional<MachineProfile>& profile, const Cluster& cluster,
                                     const HardwareDb& db) {
  if (cluster.process_link || cluster.process_collective_link) {
    Cluster unnamed = cluster;  // the other one's estimate where the file names one link only
    unnamed.process_link.reset();
    unnamed.process_collective_link.reset();
    const ProcessLinks guessed = links_between_processes(profile, unnamed, db);
    return ProcessLinks{cluster.process_link.value_or(guessed.message),
                        cluster.process_collective_link.value_or(guessed.collective)};
  }
  const char* shm = std::getenv("PARTITA_SHARED_MEMORY");
  if (shm != nullptr && std::string(shm) == "0") {
    const LinkSpec gloo = profile && profile->loopback ? *profile->loopback : db.link("loopback TCP");
    return ProcessLinks{gloo, gloo};
  }
  const auto found = std::find_if(cluster.devices.begin(), cluster.devices.end(),
                                  [](const ClusterDevice& d) { return d.spec.kind == DeviceKind::kCpu; });
  const DeviceSpec cpu =
      found != cluster.devices.end() ? found->spec : cpu_device_spec(discover_cpu("/"), &db);
  return ProcessLinks{
      profile && profile->process_link ? *profile->process_link : process_shared_memory_link(cpu),
      profile && profile->process_collective_link ? *profile->process_collective_link
                                                  : process_collective_link(cpu)};
}

PlanningInputs make_planning_inputs(Graph graph, PlanSource source, int graph_batch) {
  PARTITA_CHECK(
      source.devices.empty() || source.cluster.empty(),
      "give either --devices or --cluster, not both: --devices names devices of this machine, --cluster "
      "describes other hardware");
  PlanningInputs in;
  const HardwareDb db = load_hardware_db(default_hardware_db_path());
  // This machine's measured profile, read once; a described cluster's machines are not this one.
  const std::optional<MachineProfile> profile =
      source.cluster.empty() ? cached_machine_profile() : std::nullopt;
  if (!source.cluster.empty()) {
    source.cluster = absolute(source.cluster);
    in.cluster = load_cluster(source.cluster, db);
  } else {
    in.cluster = local_cluster(source.devices, db);
    if (profile) {
      const int cores = cpu_device_spec(discover_cpu("/"), &db).cores;
      for (auto& d : in.cluster.devices) {
        if (d.spec.kind == DeviceKind::kCpu) use_measured(d.spec, *profile, cores);
      }
    }
    if (source.devices.empty()) {
      std::string ids;
      for (const auto& d : in.cluster.devices) ids += (ids.empty() ? "" : ",") + d.id;
      source.devices = ids;  // record the default so a later simulate uses the same devices
    }
  }
  PARTITA_CHECK(!in.cluster.devices.empty(), "no devices to plan for; name some with --devices or --cluster");
  // For a described cluster its CPUs' specs give the estimates.
  in.options.process_links = links_between_processes(profile, in.cluster, db);
  std::vector<DeviceSpec> specs;
  for (const auto& d : in.cluster.devices) {
    if (std::none_of(specs.begin(), specs.end(),
                     [&](const DeviceSpec& s) { return s.name == d.spec.name; })) {
      specs.push_back(d.spec);
    }
  }
  log_info(
      fmt::format("cost table: roofline over {} device kind(s), {} nodes", specs.size(), graph.num_nodes()));
  in.table = roofline_cost_table(graph, specs);
  source.cost = in.table.method.empty() ? "roofline" : in.table.method;
  int batch = graph_batch;
  if (batch <= 0) {
    for (ValueId id : graph.inputs()) {
      const TensorMeta* m = graph.value(id).meta();
      if (m && !graph.value(id).shared && !m->shape.empty() && m->shape[0] > 0) {
        batch = static_cast<int>(m->shape[0]);
        break;
      }
    }
  }
  in.options.graph_batch = std::max(batch, 1);
  in.options.global_batch = std::max(batch, 1);
  in.options.memory_limit = source.memory_limit;
  source.model = absolute(source.model);
  source.model_spec = absolute(source.model_spec);
  in.source = std::move(source);
  in.graph = std::move(graph);
  return in;
}

namespace {

// One step of `kind` over copies of the model's trainable tensors with random gradients, at the calling
// thread's settings. In a real step the forward and backward run between two updates and push the optimizer's
// tensors out of the caches, so before each timed step a write over twice the last-level cache (64 MiB when
// unknown) evicts them. Timed back to back instead (in cache), Adam over the MLP's 85K parameters took 130 us
// where the engine's update took 225 us (200 us after the eviction); resnet18's 21.0 ms where it took 24.4 ms
// (26.4 ms after the eviction).
Seconds measure_optimizer_step(const LoadedModel& model, Optimizer kind, Bytes evict_bytes) {
  std::vector<torch::Tensor> params;
  for (const auto& p : model.parameters) {
    if (!p.requires_grad()) continue;
    torch::Tensor copy = p.detach().clone().set_requires_grad(true);
    copy.mutable_grad() = torch::randn_like(copy);
    params.push_back(copy);
  }
  if (params.empty()) return Seconds(0);
  auto optimizer = make_optimizer(kind, params, 1e-3);
  torch::Tensor evict = torch::zeros({static_cast<int64_t>(evict_bytes.value() / sizeof(float))});
  // Two untimed steps: the first allocates the optimizer's state.
  return time_repeated([&] { optimizer->step(); }, TimingOptions{2, 3, 20, Seconds(0.2), {}},
                       [&] { evict.add_(1); })
      .median;
}

}  // namespace

std::optional<std::string> batch_split_problem(const LoadedModel& model,
                                               const std::vector<InputSpec>& specs) {
  const BatchCheckResult check = check_batch_splittability(model, specs);
  if (check.splittable()) return std::nullopt;
  const char* remedy = "write the batch dimension as -1 or x.size(0) in the model";
  if (check.halves == HalvesVerdict::kMixSamples) {
    remedy = "only plans that keep the batch whole compute the same";
  } else if (check.halves == HalvesVerdict::kOutputOutsideDim0) {
    remedy =
        "return every output with the batch in dim 0 (batch-first; reshapes with -1 or x.size(0) for the "
        "batch)";
  }
  // A node that fails at another batch size first (the halves did not run then), else the first that moves or
  // reduces the batch; a node working along the batch without changing its shape (x.flip(0)) shows only in
  // the halves.
  auto problems = check.problems;
  std::stable_partition(problems.begin(), problems.end(),
                        [](const NodeBatchCheck& p) { return p.behavior == BatchBehavior::kFails; });
  for (const auto& p : problems) {
    if (p.behavior == BatchBehavior::kFollowsBatch || p.behavior == BatchBehavior::kBatchFree) continue;
    return fmt::format("node {} ({}) {}: {}{}; {}", p.node, model.ir.node(p.node).op,
                       batch_behavior_name(p.behavior), p.detail,
                       check.halves_detail.empty() ? "" : "; " + check.halves_detail, remedy);
  }
  PARTITA_ASSERT(!check.halves_detail.empty(), "a batch check that is not splittable names a cause");
  return fmt::format("{}; {}", check.halves_detail, remedy);
}

void mark_batch_splittability(PlanningInputs& in, const LoadedModel& model) {
  std::vector<InputSpec> specs;
  for (const auto& s : in.source.inputs) specs.push_back(parse_input_spec(s));
  const auto problem = batch_split_problem(model, specs);
  in.options.batch_splittable = !problem;
  in.options.min_batch_share = min_samples_per_share(model.ir);
  in.batch_split_problem = problem.value_or("");
  if (problem) log_info(fmt::format("{} does not split along the batch: {}", in.source.model, *problem));
}

void apply_profiled_costs(PlanningInputs& in, LoadedModel& model, const ProfiledCostOptions& options) {
  PARTITA_CHECK(in.source.cluster.empty(),
                "--cost profiled measures this machine's devices; a --cluster file "
                "describes other hardware: use --cost roofline there");
  PARTITA_CHECK(in.graph.num_nodes() == model.ir.num_nodes(), "apply_profiled_costs: the model has ",
                model.ir.num_nodes(), " nodes, the planning graph ", in.graph.num_nodes());
  std::vector<InputSpec> specs;
  for (const auto& s : in.source.inputs) specs.push_back(parse_input_spec(s));
  const auto tensors = make_inputs(specs, /*seed=*/5);
  const std::vector<c10::IValue> inputs(tensors.begin(), tensors.end());
  const Executor executor(model);
  const bool train = options.mode == Mode::kTraining;
  const CpuInfo cpu = discover_cpu("/");
  const Bytes llc = cpu.cache_bytes(3).value() > 0 ? cpu.cache_bytes(3) : cpu.cache_bytes(2);
  const Bytes evict_bytes = llc.value() > 0 ? llc * 2.0 : Bytes(64 << 20);
  std::vector<std::string> cpu_ids;
  for (const auto& d : in.cluster.devices) {
    if (d.spec.kind == DeviceKind::kCpu) cpu_ids.push_back(d.id);
  }
  // A second, one-sample measurement tells each node's per-call part from the part that scales with the
  // samples (fit_per_call_parts): what a microbatch or a data-parallel share of a few samples really costs.
  // Only for a model that splits along dim 0 (a batch baked into a reshape would run, or fail, differently;
  // its plans never split the batch anyway).
  const int batch = in.options.graph_batch;
  std::vector<c10::IValue> one_sample;
  if (batch > 1 && in.options.batch_splittable) {
    for (const auto& t : make_inputs(with_batch(specs, 1), /*seed=*/5)) one_sample.emplace_back(t);
  }
  const int blas_before = blas_threads();
  const auto restore_blas = [&] {
    if (blas_before > 0) set_blas_threads(blas_before);
  };
  try {
    for (size_t row = 0; row < in.table.spec_names.size(); ++row) {
      const auto dev =
          std::find_if(in.cluster.devices.begin(), in.cluster.devices.end(), [&](const ClusterDevice& d) {
            return d.spec.name == in.table.spec_names[row] && d.spec.kind == DeviceKind::kCpu;
          });
      if (dev == in.cluster.devices.end()) continue;
      const DeviceBinding binding = bind_device(dev->id);
      int blas = options.blas_threads;
      if (blas == 0) blas = cpu_ids.size() > 1 || binding.threads > 1 ? 1 : -1;
      if (blas > 0) set_blas_threads(blas);
      OpProfileOptions po;
      po.backward = train;
      po.timing = TimingOptions{1, 3, 25, options.per_node_budget, {}};
      po.device_key = fmt::format("cpu{}|blas{}", binding.cores.empty() ? "" : "-group", blas_threads());
      po.cache_path = default_op_cache_path();
      OpProfileResult result, small;
      Seconds update(0);
      on_bound_thread(dev->id, [&] {
        result = profile_ops(executor, inputs, po);
        if (!one_sample.empty()) small = profile_ops(executor, one_sample, po);
        if (train) update = measure_optimizer_step(model, in.options.optimizer, evict_bytes);
      });
      if (train) {
        in.options.update_times[in.table.spec_names[row]] = update;
        log_info(
            fmt::format("cost table: {} optimizer step on {}: {:.3f} ms (its tensors evicted from the caches "
                        "first, as a step's forward and backward do)",
                        optimizer_name(in.options.optimizer), dev->id, update.value() * 1e3));
      }
      // Workers on one machine slow each other (shared caches and memory bandwidth), and a synchronous step
      // waits for whichever core is slow at the moment (cost/corun.h): each measurement is scaled by the
      // co-run slowdown measured at its own batch size, since how much workers share depends on their
      // working sets.
      CoRunSlowdown corun, small_corun;
      if (!binding.cores.empty() && cpu_ids.size() > 1) {
        std::vector<std::string> together = {dev->id};
        for (const auto& id : cpu_ids) {
          if (id != dev->id) together.push_back(id);
        }
        corun = corun_slowdown(measure_corun(executor, inputs, train, together));
        if (!one_sample.empty())
          small_corun = corun_slowdown(measure_corun(executor, one_sample, train, together));
      }
      const double factor = corun.factor(), small_factor = small_corun.factor();
      scale_times(result.times, factor);
      MeasuredFixedParts fixed_parts = MeasuredFixedParts::kFromRow;
      if (!one_sample.empty()) {
        scale_times(small.times, small_factor);
        result.times = fit_per_call_parts(result.times, batch, small.times, 1);
        fixed_parts = MeasuredFixedParts::kMeasured;
        NodeTimes sum;
        for (const auto& t : result.times) {
          sum.forward += t.forward, sum.forward_fixed += t.forward_fixed;
          sum.backward += t.backward, sum.backward_fixed += t.backward_fixed;
        }
        log_info(fmt::format(
            "cost table: per-call parts on {} (fit over {} samples and 1, co-run slowdown x{:.2f} "
            "and x{:.2f}): forward {:.3f} of {:.3f} ms, backward {:.3f} of {:.3f} ms",
            dev->id, batch, factor, small_factor, sum.forward_fixed.value() * 1e3, sum.forward.value() * 1e3,
            sum.backward_fixed.value() * 1e3, sum.backward.value() * 1e3));
      }
      log_info(fmt::format(
          "cost table: measured {} on {} ({} thread(s), OpenBLAS {}); beside {} other CPU device(s): "
          "contention x{:.2f} (rounds {:.2f}), stragglers x{:.2f}",
          in.table.spec_names[row], dev->id, binding.threads, blas_threads(), cpu_ids.size() - 1,
          corun.contention, fmt::join(corun.round_contention, " "), corun.stragglers));
      apply_measured_times(in.table, static_cast<int>(row), result.times, fixed_parts);
      restore_blas();
    }
  } catch (...) {
    restore_blas();
    throw;
  }
  in.source.cost = in.table.method;
}

PlanningInputs load_planning_inputs(const PlanSource& source, Mode mode, Optimizer optimizer) {
  PARTITA_CHECK(source.cost.empty() || source.cost == "roofline" || source.cost == "profiled",
                "unknown --cost '", source.cost, "': use roofline or profiled");
  const bool want_profile = source.cost == "profiled" ||
                            (source.cost.empty() && source.cluster.empty() && source.model_spec.empty());
  if (!want_profile && !source.model_spec.empty()) {
    PlanningInputs in = make_planning_inputs(load_source_graph(source), source, source.batch);
    in.options.optimizer = optimizer;
    apply_device_slowdowns(in);
    return in;
  }
  if (!want_profile) {
    LoadedModel model = load_source_model(source, mode);
    PlanningInputs in = make_planning_inputs(model.ir, source);
    in.options.optimizer = optimizer;
    mark_batch_splittability(in, model);
    apply_device_slowdowns(in);
    return in;
  }
  PARTITA_CHECK(source.cluster.empty(),
                "--cost profiled measures this machine's devices; a --cluster file "
                "describes other hardware: use --cost roofline there");
  PARTITA_CHECK(source.model_spec.empty(),
                "--cost profiled needs a TorchScript model to run; a --model-spec "
                "has no weights: use --cost roofline there");
  LoadedModel model = load_source_model(source, mode);
  PlanningInputs in = make_planning_inputs(model.ir, source);
  in.options.optimizer = optimizer;
  mark_batch_splittability(in, model);
  ProfiledCostOptions po;
  po.mode = mode;
  apply_profiled_costs(in, model, po);
  apply_device_slowdowns(in);
  return in;
}

namespace {

// A device slowed or capped gets a spec of its own (`renamed`); its measured optimizer step, when there is
// one, is stretched with its other times (else the slowed device would be costed by the formula instead).
void stretch_measured_update(PlanningInputs& in, const std::string& name, const std::string& renamed,
                             double factor) {
  if (renamed == name) return;
  const auto measured = in.options.update_times.find(name);
  if (measured == in.options.update_times.end()) return;
  in.options.update_times[renamed] = Seconds(measured->second.value() * factor);
}

}  // namespace

void apply_device_slowdowns(PlanningInputs& in) {
  for (const auto& [device, watts] : in.source.power_caps) {
    const int index = in.cluster.index_of(device);
    PARTITA_CHECK(index >= 0, "--power-cap names device '", device,
                  "', which is not in the cluster; name one of "
                  "its GPUs");
    const PowerCapEffect effect =
        power_cap_effect(in.cluster.devices[static_cast<size_t>(index)].spec, Watts(watts));
    const std::string uncapped = in.cluster.devices[static_cast<size_t>(index)].spec.name;
    cap_device_power(in.cluster, in.table, device, Watts(watts));
    stretch_measured_update(in, uncapped, in.cluster.devices[static_cast<size_t>(index)].spec.name,
                            1.0 / effect.clock_ratio);
    log_info(
        fmt::format("planning {} capped at {:.4g} W: clock x{:.3f} (cube-law model), {:.4g} W while busy",
                    device, watts, effect.clock_ratio, effect.busy_power.value()));
  }
  for (const auto& [device, factor] : in.source.device_slowdowns) {
    const int index = in.cluster.index_of(device);
    const std::string unslowed = index >= 0 ? in.cluster.devices[static_cast<size_t>(index)].spec.name : "";
    slow_down_device(in.cluster, in.table, device, factor);
    stretch_measured_update(in, unslowed, in.cluster.devices[static_cast<size_t>(index)].spec.name, factor);
    log_info(fmt::format("planning {} as {:.3g}x slower", device, factor));
  }
}

}  // namespace partita::app

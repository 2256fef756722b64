#include "partita/search/power_cap_search.h"

#include <algorithm>
#include <cmath>

#include "parallel_for.h"
#include "partita/core/error.h"
#include "partita/search/device_slowdown.h"
#include "partita/search/objective.h"

namespace partita {

namespace {

// The GPU kinds of the cluster in first-appearance order, with their devices.
struct GpuKind {
  DeviceSpec spec;
  std::vector<std::string> devices;
};

std::vector<GpuKind> gpu_kinds(const Cluster& cluster) {
  std::vector<GpuKind> kinds;
  for (const auto& d : cluster.devices) {
    if (d.spec.kind != DeviceKind::kCuda) continue;
    auto it = std::find_if(kinds.begin(), kinds.end(),
                           [&](const GpuKind& k) { return k.spec.name == d.spec.name; });
    if (it == kinds.end()) {
      kinds.push_back(GpuKind{d.spec, {}});
      it = kinds.end() - 1;
    }
    it->devices.push_back(d.id);
  }
  return kinds;
}

// The whole-watt caps a kind can be planned at, uncapped (0) first.
std::vector<double> caps_of(const DeviceSpec& spec, const std::vector<double>& fractions) {
  std::vector<double> caps;
  for (double f : fractions) {
    const double watts = f >= 1.0 ? 0.0 : std::round(f * spec.tdp.value());
    if (watts > 0 && watts <= spec.idle_power.value()) continue;
    if (std::find(caps.begin(), caps.end(), watts) == caps.end()) caps.push_back(watts);
  }
  std::stable_partition(caps.begin(), caps.end(), [](double w) { return w == 0; });
  return caps;
}

}  // namespace

void PowerCapSearch::validate() const {
  PARTITA_CHECK(!tdp_fractions.empty(), "power cap search: no fraction of TDP to try");
  for (double f : tdp_fractions) {
    PARTITA_CHECK(std::isfinite(f) && f > 0 && f <= 1, "power cap search: fraction of TDP ", f,
                  " is not in (0, 1]");
  }
}

CappedPlanOutcome plan_with_power_caps(const Graph& graph, const Cluster& cluster, const CostTable& table,
                                       const SearchOptions& options, const PowerCapSearch& search) {
  search.validate();
  options.validate();
  PARTITA_CHECK(options.objective != Objective::kTime,
                "choosing power caps needs the energy or balanced objective: under time no cap makes a "
                "step faster");
  const std::vector<GpuKind> kinds = gpu_kinds(cluster);
  PARTITA_CHECK(!kinds.empty(), "cluster '", cluster.name,
                "' has no GPU to cap; power caps are modelled for GPUs only");
  std::vector<std::vector<double>> caps;
  size_t combinations = 1;
  for (const auto& k : kinds) {
    (void)power_cap_effect(k.spec, k.spec.tdp);  // a kind without TDP and idle power is named here
    caps.push_back(caps_of(k.spec, search.tdp_fractions));
    combinations *= caps.back().size();
  }
  // Settings: a cap per kind (every combination), or one fraction for all when there are too many.
  std::vector<std::vector<double>> settings;  // [setting][kind] watts, 0 = uncapped
  if (combinations <= kMaxCapCombinations) {
    std::vector<size_t> at(kinds.size(), 0);
    for (size_t n = 0; n < combinations; ++n) {
      std::vector<double> s;
      for (size_t k = 0; k < kinds.size(); ++k) s.push_back(caps[k][at[k]]);
      settings.push_back(std::move(s));
      for (size_t k = kinds.size(); k-- > 0;) {
        if (++at[k] < caps[k].size()) break;
        at[k] = 0;
      }
    }
  } else {
    std::vector<double> fractions = search.tdp_fractions;
    std::stable_partition(fractions.begin(), fractions.end(), [](double f) { return f >= 1.0; });
    for (double f : fractions) {
      std::vector<double> s;
      bool ok = true;
      for (const auto& k : kinds) {
        const double watts = f >= 1.0 ? 0.0 : std::round(f * k.spec.tdp.value());
        ok = ok && (watts == 0 || watts > k.spec.idle_power.value());
        s.push_back(watts);
      }
      if (ok && std::find(settings.begin(), settings.end(), s) == settings.end()) settings.push_back(s);
    }
  }

  // Each setting is an independent make_plan over its own copies of the cluster and table: planned on
  // several threads (the search library keeps no mutable state), each result in its setting's place, so the
  // outcome does not depend on the thread count. The first error is rethrown once all threads are done.
  CappedPlanOutcome result;
  result.settings.resize(settings.size());
  std::vector<PlanOutcome> outcomes(settings.size());
  const auto plan_setting = [&](size_t i) {
    Cluster c = cluster;
    CostTable t = table;
    CapSetting& setting = result.settings[i];
    for (size_t k = 0; k < kinds.size(); ++k) {
      if (settings[i][k] == 0) continue;
      for (const auto& id : kinds[k].devices) {
        cap_device_power(c, t, id, Watts(settings[i][k]));
        setting.caps_w[id] = settings[i][k];
      }
    }
    outcomes[i] = make_plan(graph, c, t, options);
    if (outcomes[i].plan) {
      setting.feasible = true;
      setting.step_time = outcomes[i].plan->prediction.step_time;
      setting.energy = outcomes[i].plan->prediction.energy;
    }
  };
  detail::parallel_for(settings.size(), plan_setting);

  std::vector<Plan> best;       // each feasible setting's chosen plan
  std::vector<size_t> best_of;  // its setting index
  for (size_t i = 0; i < settings.size(); ++i) {
    if (!outcomes[i].plan) continue;
    best.push_back(*outcomes[i].plan);
    best_of.push_back(i);
  }
  size_t chosen = 0;  // the uncapped setting when nothing fits
  if (!best.empty()) chosen = best_of[rank_candidates(best, options.objective).front()];
  result.outcome = std::move(outcomes[chosen]);
  if (result.outcome.plan) {
    for (const auto& id : result.outcome.plan->used_devices()) {
      const auto it = result.settings[chosen].caps_w.find(id);
      if (it != result.settings[chosen].caps_w.end()) result.caps_w[id] = it->second;
    }
  }
  // What `partita simulate` rebuilds from the plan's recorded caps: the devices it uses.
  result.cluster = cluster;
  result.table = table;
  for (const auto& [id, watts] : result.caps_w)
    cap_device_power(result.cluster, result.table, id, Watts(watts));
  return result;
}

}  // namespace partita

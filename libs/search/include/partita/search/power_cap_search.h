#pragma once
// Choosing GPU power caps for the energy and balanced objectives (`partita plan --power-cap auto`).
//
// Model: device_slowdown.h's cube-law PowerCapEffect (a cap C keeps ((C - idle) / (TDP - idle))^(1/3) of the
// clock, every op stretched by its inverse, the device drawing C while busy): a labelled model, not a
// measurement. Under it a cap trades time for energy: a GPU-bound step at 0.8 TDP takes ~8% longer for ~13%
// less energy (idle 0.25 TDP), which the objective weighs with everything else the plan does (other devices
// idling longer, links).
// Search: each GPU kind (DeviceSpec::name) is planned at each fraction of its TDP in
// PowerCapSearch::tdp_fractions, every combination of kinds when there are at most kMaxCapCombinations,
// otherwise one fraction for every GPU; a fraction whose cap is not above the kind's idle power is skipped.
// Each setting is a full make_plan (settings planned on up to hardware_concurrency() threads; the result does
// not depend on how many); the best plan of each setting compete by the options' objective
// (rank_candidates): energy takes the least J/step, balanced the least energy within kBalancedSlack of the
// fastest setting's step. Caps are whole watts. Fractions below one half are not tried by default: GPUs
// refuse limits below about 30-50% of TDP (nvidia-smi's "Min Power Limit"); `partita run --power-cap`
// checks the device's real range.
#include <map>
#include <string>
#include <vector>

#include "partita/cost/compute.h"
#include "partita/graph/graph.h"
#include "partita/hardware/device.h"
#include "partita/search/planner.h"
#include "partita/search/search_options.h"

namespace partita {

inline constexpr size_t kMaxCapCombinations = 64;

struct PowerCapSearch {
  std::vector<double> tdp_fractions{1.0, 0.9, 0.8, 0.7, 0.6, 0.5};  // each in (0, 1]; 1 = uncapped
  void validate() const;  // throws partita::Error naming a bad fraction
};

// One setting that was planned: its caps and its best plan's prediction (none when nothing fit).
struct CapSetting {
  std::map<std::string, double> caps_w;  // by device id, GPUs planned below their TDP (empty: uncapped)
  bool feasible = false;
  Seconds step_time{0};
  Joules energy{0};
};

struct CappedPlanOutcome {
  PlanOutcome outcome;                   // make_plan's outcome at the chosen caps
  std::map<std::string, double> caps_w;  // the chosen caps of the devices the chosen plan uses
  Cluster cluster;                       // the cluster and cost table with the chosen caps applied
  CostTable table;
  std::vector<CapSetting> settings;  // every setting planned, in search order (uncapped first)
};

// Throws partita::Error when options.objective is kTime (no cap makes a step faster), the cluster has no GPU,
// a GPU has no TDP and idle power to model a cap with, or the search options are bad. When no setting has a
// plan, the outcome is the uncapped setting's (with its error).
CappedPlanOutcome plan_with_power_caps(const Graph& graph, const Cluster& cluster, const CostTable& table,
                                       const SearchOptions& options, const PowerCapSearch& search = {});

}  // namespace partita

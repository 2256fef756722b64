#!/bin/bash
# The loss's targets in the host prediction (docs/status.md, "The loss's targets in the host prediction"): a
# 64-to-64-to-4096 MLP on 256 samples, whose MSE targets (a float32 copy of the 4 MiB output) are large next
# to its 1 MiB of weights, trained with MSE and with cross-entropy (8 bytes of targets a sample), SGD with
# momentum, --cost roofline, on
#   - cpu:0 alone with 1 and 4 microbatches;
#   - cpu:0 + cpu:1 in one process, data and pipeline plans (4 microbatches);
#   - cpu:0 + cpu:1 as the 2 processes of `partita launch`, data and pipeline plans (4 microbatches).
# Prints each run's measured host peak (partita's allocator counter; per rank when launched) beside the plan's
# prediction, and the prediction's step-batch part (the inputs and targets beyond the rows the devices count).
# Memory is deterministic up to the allocator's timing across threads: one run per row.
#   bench/loss_target_memory.sh [BUILD_DIR]     (default build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
PARTITA=$build/apps/partita/partita
PYTHON=${PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PYTHON" - "$out/wide.pt" <<'PY'
import sys, torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4096))
torch.jit.trace(m, torch.randn(256, 64)).save(sys.argv[1])
PY
common=(--input 256x64 --train)
printf '%-14s %-9s %-8s %-3s %-24s %-24s %s\n' loss layout strategy mb "measured (MiB)" "predicted (MiB)" \
  "step batch (MiB)"
for loss in mse cross_entropy; do
  row() {  # LAYOUT STRATEGY MICROBATCHES PLAN-ARGS... -- RUN-PREFIX...
    local layout=$1 strategy=$2 mb=$3 plan_args=() prefix=()
    shift 3
    while [ "$1" != -- ]; do plan_args+=("$1"); shift; done
    shift
    prefix=("$@")
    "$PARTITA" -q plan "$out/wide.pt" "${common[@]}" --optimizer sgd_momentum --cost roofline --loss "$loss" --microbatches "$mb" "${plan_args[@]}" \
      --json "$out/plan.json" >/dev/null
    "${prefix[@]}" "$PARTITA" -q run "$out/wide.pt" "${common[@]}" --steps 5 --plan "$out/plan.json" \
      --json "$out/run.json" >/dev/null
    "$PYTHON" - "$out/plan.json" "$out/run.json" "$loss" "$layout" "$strategy" "$mb" <<'PY'
import json, sys
plan, run = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
loss, layout, strategy, mb = sys.argv[3:7]
mib = lambda b: f"{b / 2**20:.2f}"
hosts = plan["prediction"]["hosts"]
if "measured_host_peak_bytes_per_rank" in run:
    predicted = {p["rank"]: p["peak_memory_bytes"] for h in hosts for p in h["processes"]}
    measured = " + ".join(mib(b) for b in run["measured_host_peak_bytes_per_rank"])
    predicted = " + ".join(mib(predicted[r]) for r in sorted(predicted))
else:
    measured, predicted = mib(run["measured_host_peak_bytes"]), mib(run["predicted_host_peak_bytes"])
batch = mib(sum(h["step_batch_bytes"] for h in hosts))
print(f"{loss:<14} {layout:<9} {strategy:<8} {mb:<3} {measured:<24} {predicted:<24} {batch}", flush=True)
PY
  }
  for mb in 1 4; do row cpu:0 - "$mb" --devices cpu:0 --; done
  for strategy in data pipeline; do
    row threads "$strategy" 4 --devices cpu:0,cpu:1 --all-devices --strategy "$strategy" -- env
    row launched "$strategy" 4 --devices cpu:0,cpu:1 --all-devices --strategy "$strategy" --processes launch \
      -- "$PARTITA" launch -n 2 --
  done
done

#!/bin/bash
# The loss's targets and the loss's backward in the memory prediction (docs/status.md, "The loss's targets in
# the host prediction", "The loss's backward in the training peak"): a 64-to-HIDDEN-to-4096 MLP on BATCH
# samples (default 64 and 256: MSE targets, a float32 copy of the 4 MiB output, large next to its 1 MiB of
# weights), trained with MSE and with cross-entropy (8 bytes of targets a sample), OPTIMIZER (default
# sgd_momentum), --cost roofline, on
#   - cpu:0 alone with 1 and 4 microbatches;
#   - cpu:0 + cpu:1 in one process, data and pipeline plans (4 microbatches);
#   - cpu:0 + cpu:1 as the 2 processes of `partita launch`, data and pipeline plans (4 microbatches).
# Prints each run's measured host peak (partita's allocator counter; per rank when launched) beside the plan's
# prediction, and the prediction's step-batch part (the inputs and targets beyond the rows the devices count).
# Memory is deterministic up to the allocator's timing across threads: one run per row.
#   [HIDDEN=64] [BATCH=256] [OPTIMIZER=sgd_momentum] bench/loss_target_memory.sh [BUILD_DIR]  (default build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
PARTITA=$build/apps/partita/partita
PYTHON=${PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
hidden=${HIDDEN:-64} batch=${BATCH:-256} optimizer=${OPTIMIZER:-sgd_momentum}
"$PYTHON" - "$out/wide.pt" "$hidden" "$batch" <<'PY'
import sys, torch
hidden, batch = int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 4096))
torch.jit.trace(m, torch.randn(batch, 64)).save(sys.argv[1])
PY
common=(--input "${batch}x64" --train)
printf '%-14s %-9s %-8s %-3s %-24s %-24s %s\n' loss layout strategy mb "measured (MiB)" "predicted (MiB)" \
  "step batch (MiB)"
for loss in mse cross_entropy; do
  row() {  # LAYOUT STRATEGY MICROBATCHES PLAN-ARGS... -- RUN-PREFIX...
    local layout=$1 strategy=$2 mb=$3 plan_args=() prefix=()
    shift 3
    while [ "$1" != -- ]; do plan_args+=("$1"); shift; done
    shift
    prefix=("$@")
    "$PARTITA" -q plan "$out/wide.pt" "${common[@]}" --optimizer "$optimizer" --cost roofline --loss "$loss" --microbatches "$mb" "${plan_args[@]}" \
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

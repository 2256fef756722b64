#!/bin/bash
# Predicted vs measured host memory for storages that do not depend on the batch (docs/status.md, forty-second
# session): traces three small models with Debian's python3-torch, plans each on cpu:0 + cpu:1 (--all-devices,
# --cost roofline) and runs the plan (`partita run`: the CPU tensors of the model and what the run allocated).
#   merged      fc(x @ (W + A @ B)), x 16x1024, A 1024x64: a weight computed from weights (tensor plans)
#   shared      fc(relu(x @ w)), w 1024x1024:shared (4 MiB): a shared user input
#   both_ends   fc(relu(x @ w) @ w.t()): the same input read again by a later pipeline stage
#
#   bench/batch_free_memory.sh [PARTITA_BINARY]     (default build/apps/partita/partita)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PARTITA=${1:-$here/build/apps/partita/partita}
PYTHON=${PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PYTHON" - "$out" <<'PY'
import sys, torch, torch.nn as nn
out = sys.argv[1]
torch.manual_seed(0)
class Merged(nn.Module):
    def __init__(s):
        super().__init__()
        s.W = nn.Parameter(torch.randn(1024, 1024) * 0.02)
        s.A = nn.Parameter(torch.randn(1024, 64) * 0.02)
        s.B = nn.Parameter(torch.randn(64, 1024) * 0.02)
        s.fc = nn.Linear(1024, 10)
    def forward(s, x):
        return s.fc(x @ (s.W + s.A @ s.B))
class Shared(nn.Module):
    def __init__(s):
        super().__init__()
        s.fc = nn.Linear(1024, 10)
    def forward(s, x, w):
        return s.fc(torch.relu(x @ w))
class BothEnds(Shared):
    def forward(s, x, w):
        return s.fc(torch.relu(x @ w) @ w.t())
x, w = torch.randn(16, 1024), torch.randn(1024, 1024)
torch.jit.trace(Merged(), x).save(f"{out}/merged.pt")
torch.jit.trace(Shared(), (x, w)).save(f"{out}/shared.pt")
torch.jit.trace(BothEnds(), (x, w)).save(f"{out}/both_ends.pt")
PY
printf '%-10s %-9s %-6s %-3s %12s %12s\n' model strategy mode mb predicted measured
row() {  # model strategy mode(infer|train) microbatches inputs...
  local model=$1 strategy=$2 mode=$3 mb=$4
  shift 4
  local train=()
  [ "$mode" = train ] && train=(--train)
  "$PARTITA" -q plan "$out/$model.pt" "$@" --devices cpu:0,cpu:1 --strategy "$strategy" --microbatches "$mb" \
    --all-devices "${train[@]}" --cost roofline --json "$out/plan.json" >/dev/null
  "$PARTITA" -q run "$out/$model.pt" "$@" --plan "$out/plan.json" "${train[@]}" --steps 10 --json "$out/run.json" \
    >/dev/null
  "$PYTHON" -c "
import json; r = json.load(open('$out/run.json'))
print(f\"{'$model':<10} {'$strategy':<9} {'$mode':<6} {$mb:<3} {r['predicted_host_peak_bytes'] / 2**20:10.2f}Mi {r['measured_host_peak_bytes'] / 2**20:10.2f}Mi\")"
}
for mode in infer train; do
  for mb in 1 4; do row merged tensor $mode $mb --input 16x1024; done
  for strategy in data pipeline tensor; do
    for mb in 1 4; do row shared $strategy $mode $mb --input 16x1024 --input 1024x1024:shared; done
  done
  row both_ends pipeline $mode 8 --input 16x1024 --input 1024x1024:shared
done

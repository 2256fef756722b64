#!/bin/bash
# The optimizer step, predicted vs run: for each zoo model, `partita -v plan --train --devices cpu:0` (profiled
# costs) logs the Adam step it measured for its cost table ("optimizer step on cpu:0: X ms", timed with the
# optimizer's tensors evicted from the caches, as a real step's forward and backward leave them); then
# `partita run` of that plan with --trace gives the engine's own update (the `optimizer` events, which also
# cover handing the step to the worker's thread). Prints both and the error, REPEAT times per model.
#
#   bench/update_prediction.sh [PARTITA_BINARY]
#   default: build/apps/partita/partita; about two minutes here (REPEAT=2). Run on an idle machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PARTITA=${1:-$here/build/apps/partita/partita}
ZOO=${ZOO:-$here/build/models}
PYTHON=${PYTHON:-/usr/bin/python3}
repeat=${REPEAT:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf "%-14s %-16s %12s %12s %8s\n" model input "predicted ms" "engine ms" error
for spec in "mlp 256x64" "cnn 32x3x32x32" "gpt 8x128:i64:2048" "resnet18 8x3x112x112" "mobilenet_v2 8x3x112x112"; do
  set -- $spec
  for _ in $(seq "$repeat"); do
    "$PARTITA" -v plan "$ZOO/$1.pt" --input "$2" --devices cpu:0 --train --json "$work/plan.json" >/dev/null \
      2>"$work/plan.log"
    predicted=$(sed -n 's/.*optimizer step on cpu:0: \([0-9.]*\) ms.*/\1/p' "$work/plan.log" | head -1)
    [ -n "$predicted" ] || { echo "no optimizer step in the plan's log: $work/plan.log" >&2; exit 1; }
    "$PARTITA" -q run "$ZOO/$1.pt" --input "$2" --plan "$work/plan.json" --train --steps 30 \
      --trace "$work/trace.json" >/dev/null
    "$PYTHON" - "$work/trace.json" "$1" "$2" "$predicted" <<'PY'
import json, statistics, sys
t = json.load(open(sys.argv[1]))
events = t["traceEvents"] if isinstance(t, dict) else t
engine = statistics.median(e["dur"] for e in events if e.get("ph") == "X" and e.get("cat") == "optimizer") / 1e3
predicted = float(sys.argv[4])
print(f"{sys.argv[2]:<14} {sys.argv[3]:<16} {predicted:12.3f} {engine:12.3f} {100 * (predicted / engine - 1):+7.1f}%")
PY
  done
done

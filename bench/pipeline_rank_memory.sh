#!/bin/bash
# Host memory of 2-stage pipelines across processes (docs/distributed.md, "Memory"): for the zoo's MLP, CNN and
# GPT, plans a training pipeline on cpu:0 + cpu:1 (4 microbatches, SGD with momentum, --cost roofline), runs it
# with one process per stage (`partita launch -n 2`, 5 steps) and prints each rank's measured host peak and
# model tensors, the ranks' total, and the plan's prediction for one process per machine. STRATEGY=tensor does
# the same for 2-way tensor-parallel plans with one process per device (the MLP and the GPT; "Tensor
# parallelism across processes").
#   [STRATEGY=pipeline|tensor] bench/pipeline_rank_memory.sh [BUILD_DIR]     (default build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
PARTITA=$build/apps/partita/partita
PYTHON=${PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "| model | input | rank peaks (MiB) | model tensors per rank (MiB) | together (MiB) | predicted (MiB) | predicted / measured - 1 |"
echo "|---|---|---|---|---|---|---|"
strategy=${STRATEGY:-pipeline}
cases=("mlp 8x64" "cnn 8x3x32x32" "gpt 8x128:i64:2048")
[ "$strategy" = tensor ] && cases=("mlp 8x64" "gpt 8x128:i64:2048")
for c in "${cases[@]}"; do
  read -r name input <<<"$c"
  "$PARTITA" -q plan "$build/models/$name.pt" --input "$input" --devices cpu:0,cpu:1 --strategy "$strategy" \
    --microbatches 4 --train --optimizer sgd_momentum --cost roofline --json "$out/$name.plan.json" >/dev/null
  "$PARTITA" launch -n 2 -- partita -q run "$build/models/$name.pt" --input "$input" --train --steps 5 \
    --plan "$out/$name.plan.json" --json "$out/$name.run.json" >/dev/null
  "$PYTHON" - "$out/$name.run.json" "$name" "$input" <<'PY'
import json, sys
d, name, spec = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
mib = lambda b: b / 2**20
peaks, held, predicted = d["measured_host_peak_bytes_per_rank"], d["model_bytes_per_rank"], d["predicted_host_peak_bytes"]
print(f"| {name} | {spec} | {' + '.join(f'{mib(p):.2f}' for p in peaks)} | {' + '.join(f'{mib(m):.2f}' for m in held)} | "
      f"{mib(sum(peaks)):.2f} | {mib(predicted):.2f} | {100 * (predicted / sum(peaks) - 1):+.1f}% |")
PY
done

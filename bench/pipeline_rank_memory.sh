#!/bin/bash
# Host memory of plans across processes (docs/distributed.md, "Memory"): for each strategy of STRATEGIES
# (default "pipeline data tensor") and each of the zoo's MLP, CNN and GPT (tensor: the MLP and the GPT), plans
# training on cpu:0 + cpu:1 for the processes of `partita launch` (--processes launch; 4 microbatches, SGD
# with momentum, --cost roofline), runs it with `partita launch -n 2` (5 steps) and prints each rank's
# measured host peak beside the plan's prediction for it, the model tensors each rank holds, and the ranks'
# total against the plan's. A pipeline runs one process per stage, data and tensor plans one per device.
# Writes its section of docs/benchmarks.md ("## Host memory of launched ranks") when run as it is; with any of
# these set it only prints its table: STRATEGIES (e.g. "branch"), MICROBATCHES (a number, or "auto": the
# planner's choice), OPTIMIZER (e.g. adam) and MODELS ("name=input ...", zoo names, in place of the cases above).
#   [STRATEGIES=...] [MICROBATCHES=...] [OPTIMIZER=...] [MODELS=...] bench/pipeline_rank_memory.sh [BUILD_DIR]
#   (default build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
PARTITA=$build/apps/partita/partita
PYTHON=${PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
strategies=${STRATEGIES:-${STRATEGY:-pipeline data tensor}}  # STRATEGY: the name before 2026-12-06
microbatches=${MICROBATCHES:-4}
optimizer=${OPTIMIZER:-sgd_momentum}
split=(--microbatches "$microbatches")
[ "$microbatches" = auto ] && split=()
as_documented=true
[ -n "${STRATEGIES:-}${STRATEGY:-}${MICROBATCHES:-}${OPTIMIZER:-}${MODELS:-}" ] && as_documented=false
{
  echo "| strategy | model | input | rank peaks, measured (MiB) | rank peaks, predicted (MiB) | model tensors per rank (MiB) | together (MiB) | predicted (MiB) | predicted / measured - 1 |"
  echo "|---|---|---|---|---|---|---|---|---|"
} >"$out/table.md"
for strategy in $strategies; do
  cases=("mlp 8x64" "cnn 8x3x32x32" "gpt 8x128:i64:2048")
  [ "$strategy" = tensor ] && cases=("mlp 8x64" "gpt 8x128:i64:2048")
  if [ -n "${MODELS:-}" ]; then
    cases=()
    for m in $MODELS; do cases+=("${m%%=*} ${m#*=}"); done
  fi
  for c in "${cases[@]}"; do
    read -r name input <<<"$c"
    "$PARTITA" -q plan "$build/models/$name.pt" --input "$input" --devices cpu:0,cpu:1 --strategy "$strategy" \
      --all-devices --processes launch "${split[@]}" --train --optimizer "$optimizer" --cost roofline \
      --json "$out/$name.plan.json" >/dev/null
    "$PARTITA" launch -n 2 -- partita -q run "$build/models/$name.pt" --input "$input" --train --steps 5 \
      --plan "$out/$name.plan.json" --json "$out/$name.run.json" >/dev/null
    "$PYTHON" - "$out/$name.run.json" "$out/$name.plan.json" "$strategy" "$name" "$input" >>"$out/table.md" <<'PY'
import json, sys
d, plan = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
strategy, name, spec = sys.argv[3:6]
mib = lambda b: b / 2**20
peaks, held = d["measured_host_peak_bytes_per_rank"], d["model_bytes_per_rank"]
predicted = {p["rank"]: p["peak_memory_bytes"] for h in plan["prediction"]["hosts"] for p in h["processes"]}
total = d["predicted_host_peak_bytes"]
print(f"| {strategy} | {name} | {spec} | {' + '.join(f'{mib(p):.2f}' for p in peaks)} | "
      f"{' + '.join(f'{mib(predicted[r]):.2f}' for r in sorted(predicted))} | {' + '.join(f'{mib(m):.2f}' for m in held)} | "
      f"{mib(sum(peaks)):.2f} | {mib(total):.2f} | {100 * (total / sum(peaks) - 1):+.1f}% |")
PY
    tail -1 "$out/table.md"
  done
done
if ! $as_documented; then
  echo "(strategies $strategies, microbatches $microbatches, optimizer $optimizer; docs/benchmarks.md left as it is)"
  exit 0
fi
{
  echo "## Host memory of launched ranks"
  echo
  echo "\`bash bench/pipeline_rank_memory.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')): training plans on cpu:0 + cpu:1"
  echo "made with \`--processes launch\` (4 microbatches, SGD with momentum, \`--cost roofline\`), run by"
  echo "\`partita launch -n 2\` for 5 steps. Measured: each rank's host peak (CPU tensors, partita's allocator"
  echo "counter) and the model tensors it holds at the end; predicted: the plan's figure for each process"
  echo "(\`prediction.hosts[].processes\`) and for the machine (their sum)."
  echo
  cat "$out/table.md"
} | "$PYTHON" "$here/bench/md_section.py" "$here/docs/benchmarks.md" "## Host memory of launched ranks"

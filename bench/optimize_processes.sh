#!/bin/bash
# `partita optimize --processes one` (threads of one process) against `--processes launch` (the device set
# planned for the processes of `partita launch`, each such candidate measured as a launched job) and
# `--processes both` (planned and measured both ways, the best measured kept): for each case every mode,
# alternating, ROUNDS times; per run the layout optimize chose, its measured step and plain LibTorch's in the
# same final rounds (medians), the speedup and optimize's own wall time. Writes its section of
# docs/benchmarks.md ("## optimize with launched processes"). Run it with nothing else on the machine.
#
#   [MODES="one launch both"] bench/optimize_processes.sh [ROUNDS]     (default 2)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-2}
read -r -a modes <<<"${MODES:-one launch both}"
build=${BUILD:-$here/build}
p=$build/apps/partita/partita
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cases=(
  "gpt|8x128:i64:2048|infer"
  "gpt|8x128:i64:2048|train"
  "mlp|256x64|train"
  "cnn|32x3x32x32|train"
)
for c in "${cases[@]}"; do
  IFS='|' read -r model input mode <<<"$c"
  train=()
  [ "$mode" = train ] && train=(--train)
  for r in $(seq 1 "$rounds"); do
    for processes in "${modes[@]}"; do
      key="$model-${input//:/_}-$mode-$processes-$r"
      start=$(date +%s%N)
      "$p" -q optimize "$build/models/$model.pt" --input "$input" "${train[@]}" --processes "$processes" \
        --out "$work/$key" --json "$work/$key.json" >/dev/null
      echo $((($(date +%s%N) - start) / 1000000)) >"$work/$key.wall_ms"
      echo "$key: $(python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print(f\"{d['layout']}: {d['plan_ms']:.2f} ms vs plain {d['baseline_ms']:.2f} ms (before any plan {d['baseline_before_ms']:.2f}), {d['speedup']:.2f}x\")" "$work/$key.json")" >&2
    done
  done
done
python3 - "$work" "$rounds" "${modes[*]}" "${cases[@]}" >"$work/table.md" <<'PY'
import json, statistics, sys
work, rounds, modes, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]
print("| model | input | mode | processes | chosen layout per run | partita (ms) | plain LibTorch (ms) | "
      "plain LibTorch before any plan ran (ms) | speedup per run | median speedup | optimize wall time (s, median) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for c in cases:
    model, inp, mode = c.split("|")
    for processes in modes:
        runs, walls = [], []
        for r in range(1, rounds + 1):
            key = f"{model}-{inp.replace(':', '_')}-{mode}-{processes}-{r}"
            runs.append(json.load(open(f"{work}/{key}.json")))
            walls.append(float(open(f"{work}/{key}.wall_ms").read()) / 1000)
        layouts = "; ".join(d["layout"] for d in runs)
        plan_ms = ", ".join(f"{d['plan_ms']:.2f}" for d in runs)
        base_ms = ", ".join(f"{d['baseline_ms']:.2f}" for d in runs)
        before_ms = ", ".join(f"{d['baseline_before_ms']:.2f}" for d in runs)
        speedups = ", ".join(f"{d['speedup']:.2f}x" for d in runs)
        print(f"| {model} | {inp} | {mode} | {processes} | {layouts} | {plan_ms} | {base_ms} | {before_ms} | {speedups} | "
              f"{statistics.median(d['speedup'] for d in runs):.2f}x | {statistics.median(walls):.0f} |")
PY
{
  echo "## optimize with launched processes"
  echo
  echo "\`MODES=\"${modes[*]}\" bash bench/optimize_processes.sh $rounds\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')):"
  echo "\`partita optimize\` with \`--processes one\` (a plan's devices are threads of optimize's process),"
  echo "\`--processes launch\` (the device set planned for the processes of \`partita launch\`, each such candidate"
  echo "measured as a launched job) and \`--processes both\` (the device set planned both ways, candidates of each"
  echo "measured, the best measured kept), alternating, defaults otherwise (Adam in training). Partita and plain"
  echo "LibTorch: medians of optimize's own final rounds, which alternate the two; the speedup is theirs, so two"
  echo "runs' speedups compare and their step times only roughly (the machine's speed moves between runs). Plain"
  echo "LibTorch before any plan ran: its chosen setting's run-off median, measured before any candidate ran (in"
  echo "a launched optimize, before any job), against which its final rounds show drift."
  echo
  cat "$work/table.md"
} | python3 "$here/bench/md_section.py" "$here/docs/benchmarks.md" "## optimize with launched processes"
cat "$work/table.md"

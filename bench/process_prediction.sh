#!/usr/bin/env bash
# How well `partita plan --processes launch` predicts a plan run by `partita launch`: for each case, the planner's
# plan for cpu:0 + cpu:1 with --processes launch (profiled costs), its prediction with the messages between
# the processes (the links `partita profile` measures first) and the same plan's prediction in one process (both from
# the same cost table), against its step time run by `partita launch -n N` (N = its processes) and, for
# reference, in one process; ROUNDS rounds of 20 steps each, alternating, medians. Prints the table and writes
# it into docs/benchmarks.md ("## Predictions for launched plans"). Run it with nothing else on the machine.
#   bash bench/process_prediction.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
build="${PARTITA_BUILD_DIR:-build}"
p="$build/apps/partita/partita"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$p" -q profile --refresh >/dev/null  # the links between processes, measured now
# model input mode strategy
cases=("mlp 32x64 train tensor" "gpt 8x128:i64:2048 train tensor" "gpt 8x128:i64:2048 infer tensor"
  "mlp 32x64 train pipeline" "gpt 8x128:i64:2048 train pipeline" "gpt 8x128:i64:2048 infer pipeline"
  "mlp 32x64 train data" "cnn 8x3x32x32 train data")
for c in "${cases[@]}"; do
  read -r model input mode strategy <<<"$c"
  key="$model-$mode-$strategy"
  train=()
  [ "$mode" = train ] && train=(--train --optimizer sgd_momentum)
  extra=(--all-devices)
  [ "$strategy" = pipeline ] && extra=(--microbatches 4)
  [ "$strategy" = tensor ] && extra=()
  "$p" -q plan "$build/models/$model.pt" --input "$input" --devices cpu:0,cpu:1 --strategy "$strategy" \
    "${extra[@]}" "${train[@]}" --processes launch --json "$work/$key.plan.json" >/dev/null
  n=$(python3 -c "import json, sys; j = json.load(open(sys.argv[1])); s = j['stages']
print(len(s) if len(s) > 1 else len(j['groups'][s[0]['group']]['devices']))" "$work/$key.plan.json")
  echo "$n" >"$work/$key.n"
  run_train=()
  [ "$mode" = train ] && run_train=(--train)
  run=("$p" -q run "$build/models/$model.pt" --input "$input" --plan "$work/$key.plan.json" "${run_train[@]}"
    --steps 20)
  for r in $(seq "$rounds"); do
    "$p" launch -n "$n" -- "${run[@]}" --json "$work/$key.launch.$r.json" >/dev/null
    "${run[@]}" --json "$work/$key.one.$r.json" >/dev/null
  done
done
python3 - "$work" "$rounds" "${cases[@]}" <<'PY' | tee "$work/table.md"
import json, statistics, sys
work, rounds, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("| model | input | mode | plan | processes | predicted in one process (ms) | predicted launched (ms) | "
      "measured launched: rounds (ms) | median | error of the one-process / launched prediction | "
      "measured in one process (median, ms) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
errors = {"one": [], "launch": []}
for c in cases:
    model, inp, mode, strategy = c.split()
    key = f"{model}-{mode}-{strategy}"
    plan = json.load(open(f"{work}/{key}.plan.json"))
    n = open(f"{work}/{key}.n").read().strip()
    launched = [json.load(open(f"{work}/{key}.launch.{r}.json"))["step_ms"] for r in range(1, rounds + 1)]
    alone = [json.load(open(f"{work}/{key}.one.{r}.json"))["step_ms"] for r in range(1, rounds + 1)]
    measured = statistics.median(launched)
    one, launch = plan["predicted_step_ms_one_process"], plan["predicted_step_ms"]
    e1, e2 = one / measured - 1, launch / measured - 1
    errors["one"].append(abs(e1))
    errors["launch"].append(abs(e2))
    print(f"| {model} | {inp} | {mode} | {strategy} | {n} | {one:.2f} | {launch:.2f} | "
          f"{', '.join(f'{x:.2f}' for x in launched)} | {measured:.2f} | {e1:+.0%} / {e2:+.0%} | "
          f"{statistics.median(alone):.2f} |")
print()
print(f"Median absolute error: {statistics.median(errors['one']):.0%} in one process, "
      f"{statistics.median(errors['launch']):.0%} launched.")
PY
link=$(python3 -c "import json, glob, os
root = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
for f in glob.glob(root + '/partita/*.json'):
    j = json.load(open(f))
    if 'process_link' in j and 'process_collective_link' in j:
        m, c = j['process_link'], j['process_collective_link']
        print(f\"messages {m['latency'] * 1e6:.1f} us, {m['bandwidth'] / 1e9:.2f} GB/s; collectives {c['latency'] * 1e6:.1f} us, {c['bandwidth'] / 1e9:.2f} GB/s\")
        break")
{
  echo "## Predictions for launched plans"
  echo
  echo "\`bash bench/process_prediction.sh $rounds\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')):"
  echo "the planner's plan for cpu:0 + cpu:1 made with \`--processes launch\` (profiled costs; SGD with momentum; a"
  echo "pipeline: 4 microbatches; data plans made with --all-devices), its prediction with the messages between its"
  echo "processes (the links \`partita profile\` measured: $link) and the same plan's in one process, both from"
  echo "one cost table, against \`partita launch -n N\` running it (and, for reference, one process running it),"
  echo "alternating, rounds of 20 steps (\`partita run\` step_ms, each a median of its round)."
  echo
  cat "$work/table.md"
} | python3 bench/md_section.py docs/benchmarks.md "## Predictions for launched plans"

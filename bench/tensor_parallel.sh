#!/usr/bin/env bash
# Tensor parallelism against data parallelism on this machine's two cores: for each case the planner's
# `--strategy tensor` and `--strategy data` plans for cpu:0 + cpu:1 (profiled costs, SGD with momentum), in
# one process and with one process per device (`partita launch -n 2`; the data plan then with --all-devices),
# run alternating, ROUNDS rounds of 20 steps each; prints each plan's predicted step, every round's measured
# median and the median of the rounds, and writes the table into docs/benchmarks.md ("## Tensor parallelism").
# Run it with nothing else on the machine.
#   bash bench/tensor_parallel.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
build="${PARTITA_BUILD_DIR:-build}"
p="$build/apps/partita/partita"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cases=("gpt 8x128:i64:2048 train" "gpt 8x128:i64:2048 infer" "mlp 32x64 train")
for c in "${cases[@]}"; do
  read -r model input mode <<<"$c"
  key="$model-$mode"
  train=()
  [ "$mode" = train ] && train=(--train --optimizer sgd_momentum)
  for s in tensor data; do
    "$p" -q plan "$build/models/$model.pt" --input "$input" --devices cpu:0,cpu:1 --strategy "$s" "${train[@]}" \
      --json "$work/$key.$s.plan.json" >/dev/null
  done
  # One process per device: the same tensor plan, and a data plan that uses both devices.
  cp "$work/$key.tensor.plan.json" "$work/$key.tensor-2proc.plan.json"
  "$p" -q plan "$build/models/$model.pt" --input "$input" --devices cpu:0,cpu:1 --strategy data --all-devices \
    "${train[@]}" --json "$work/$key.data-2proc.plan.json" >/dev/null
  for r in $(seq "$rounds"); do
    for s in tensor data tensor-2proc data-2proc; do
      run_train=()
      [ "$mode" = train ] && run_train=(--train)
      launch=()
      [[ $s == *-2proc ]] && launch=("$p" launch -n 2 --)
      "${launch[@]}" "$p" -q run "$build/models/$model.pt" --input "$input" --plan "$work/$key.$s.plan.json" \
        "${run_train[@]}" --steps 20 --json "$work/$key.$s.$r.json" >/dev/null
    done
  done
done
python3 - "$work" "$rounds" "${cases[@]}" <<'PY' | tee "$work/table.md"
import json, statistics, sys
work, rounds, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("| model | input | mode | plan | predicted | measured rounds (ms) | median | tensor / data |")
print("|---|---|---|---|---|---|---|---|")
for c in cases:
    model, inp, mode = c.split()
    key = f"{model}-{mode}"
    med = {}
    for s in ("tensor", "data", "tensor-2proc", "data-2proc"):
        plan = json.load(open(f"{work}/{key}.{s}.plan.json"))
        pred = plan["prediction"]["step_time_s"] * 1e3 if "step_time_s" in plan["prediction"] else float("nan")
        runs = [json.load(open(f"{work}/{key}.{s}.{r}.json"))["step_ms"] for r in range(1, rounds + 1)]
        med[s] = statistics.median(runs)
        ratio = f"{med['tensor'] / med['data']:.2f}x" if s == "data" else (
            f"{med['tensor-2proc'] / med['data-2proc']:.2f}x" if s == "data-2proc" else "")
        print(f"| {model} | {inp} | {mode} | {s} | {pred:.2f} ms | {', '.join(f'{x:.2f}' for x in runs)} | "
              f"{med[s]:.2f} | {ratio} |")
PY
{
  echo "## Tensor parallelism"
  echo
  echo "\`bash bench/tensor_parallel.sh $rounds\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')):"
  echo "the planner's tensor-parallel and data-parallel plans for cpu:0 + cpu:1, alternating rounds of 20 steps"
  echo "(\`partita run\` step_ms, each a median of its round); \`-2proc\`: one process per device (\`partita launch"
  echo "-n 2\`, the data plan made with --all-devices). Ratios above 1 mean tensor parallelism is slower."
  echo
  cat "$work/table.md"
} | python3 bench/md_section.py docs/benchmarks.md "## Tensor parallelism"

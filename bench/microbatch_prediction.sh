#!/usr/bin/env bash
# How well profiled planning predicts a pipeline's step as its microbatches shrink: GPT 8x128 training as a
# 2-stage 1F1B pipeline on cpu:0 + cpu:1 with 1, 2, 4 and 8 microbatches (8 to 1 samples each). Each plan is
# made once (profiled costs, `partita plan --cost profiled`), then run ROUNDS times, alternating, 8 steps per
# run; prints each plan's predicted step and the median of its measured ones. Run it with nothing else on
# the machine.
#   bash bench/microbatch_prediction.sh [ROUNDS] [INPUT]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
input=${2:-8x128:i64:2048}
build="${PARTITA_BUILD_DIR:-build}"
p="${PARTITA_BIN:-$build/apps/partita/partita}"
model="$build/models/gpt.pt"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
counts="1 2 4 8"
for m in $counts; do
  "$p" -q plan "$model" --input "$input" --devices cpu:0,cpu:1 --strategy pipeline --microbatches "$m" \
    --train --cost profiled --json "$work/plan-$m.json" >/dev/null
done
for r in $(seq "$rounds"); do
  for m in $counts; do
    "$p" -q run "$model" --input "$input" --plan "$work/plan-$m.json" --train --steps 8 \
      --json "$work/run-$m-$r.json" >/dev/null
  done
done
python3 - "$work" "$rounds" $counts <<'PY'
import json, statistics, sys
work, rounds, counts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("microbatches  predicted ms  measured ms (median of rounds: each)  error")
for m in counts:
    plan = json.load(open(f"{work}/plan-{m}.json"))
    predicted = plan["predicted_step_ms"]
    runs = [json.load(open(f"{work}/run-{m}-{r}.json"))["step_ms"] for r in range(1, rounds + 1)]
    measured = statistics.median(runs)
    each = ", ".join(f"{x:.1f}" for x in runs)
    print(f"{m:>12}  {predicted:>12.1f}  {measured:>11.1f} ({each})  {100 * (predicted / measured - 1):+.1f}%")
PY

#!/usr/bin/env bash
# What activation offload costs where it cannot save anything (a CPU device: the copy stays in host memory):
# GPT 8x64 as a 2-stage 1F1B pipeline on cpu:0 + cpu:1, once as planned and once with stage 0 offloading its
# saved activations, alternating, ROUNDS rounds of 20 steps each; prints each round's median step time and the
# bytes stage 0 copied per step. Run it with nothing else on the machine.
#   bash bench/offload_cost.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
build="${PARTITA_BUILD_DIR:-build}"
p="$build/apps/partita/partita"
model="$build/models/gpt.pt"
input=8x64:i64:2048
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$p" -q plan "$model" --input "$input" --devices cpu:0,cpu:1 --strategy pipeline --train --microbatches 4 \
  --json "$work/plain.json" >/dev/null
python3 - "$work" <<'PY'
import json, sys
plan = json.load(open(f"{sys.argv[1]}/plain.json"))
plan["stages"][0]["offload"] = "activations"
json.dump(plan, open(f"{sys.argv[1]}/offload.json", "w"))
PY
for r in $(seq "$rounds"); do
  for variant in plain offload; do
    "$p" -q run "$model" --input "$input" --plan "$work/$variant.json" --train --steps 20 \
      --json "$work/$variant-run.json" >/dev/null
    python3 - "$work/$variant-run.json" "$variant" "$r" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
copied = d.get("offloaded_activations", [{"bytes": 0, "tensors": 0}])[0]
print(f"round {sys.argv[3]} {sys.argv[2]:8s} step {d['step_ms']:.1f} ms  stage 0 copied {copied['tensors']} "
      f"tensors, {copied['bytes'] / 1e6:.2f} MB per step")
PY
  done
done

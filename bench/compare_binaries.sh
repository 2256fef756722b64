#!/usr/bin/env bash
# Two builds of partita side by side on plans for cpu:0 + cpu:1 run by `partita launch -n 2`: the 2-way
# tensor plans of MLP 32x64 training, GPT 8x128 training and inference (collectives through shared memory), and
# the MLP's 2-stage pipeline (training, 4 microbatches: messages through the shared-memory mailbox); the two
# binaries alternating, ROUNDS rounds of 20 steps; prints each round's step_ms, the medians and old/new. Used
# for changes to the path between processes (docs/status.md: the tensor link's packing copy, the segments'
# page mapping).
#   bash bench/compare_binaries.sh OLD_PARTITA NEW_PARTITA [ROUNDS]
# e.g. keep a copy of build/apps/partita/partita before the change, rebuild, then compare the two.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bash bench/compare_binaries.sh OLD_PARTITA NEW_PARTITA [ROUNDS]" >&2; exit 2; }
old=$1 new=$2 rounds=${3:-5}
for p in "$old" "$new"; do [ -x "$p" ] || { echo "compare_binaries: $p is not an executable" >&2; exit 2; }; done
models="${PARTITA_BUILD_DIR:-build}/models"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for c in "mlp 32x64 train tensor" "gpt 8x128:i64:2048 train tensor" "gpt 8x128:i64:2048 infer tensor" \
  "mlp 32x64 train pipeline"; do
  read -r model input mode strategy <<<"$c"
  key=$model-$mode-$strategy
  split=()
  [ "$strategy" = pipeline ] && split=(--microbatches 4)
  train=()
  [ "$mode" = train ] && train=(--train)
  opt=()
  [ "$mode" = train ] && opt=(--optimizer sgd_momentum)
  "$new" -q plan "$models/$model.pt" --input "$input" --devices cpu:0,cpu:1 --strategy "$strategy" "${split[@]}" \
    "${train[@]}" "${opt[@]}" --json "$work/$key.plan.json" >/dev/null
  for r in $(seq "$rounds"); do
    for v in old new; do
      p=${!v}
      "$p" launch -n 2 -- "$p" -q run "$models/$model.pt" --input "$input" --plan "$work/$key.plan.json" \
        "${train[@]}" --steps 20 --json "$work/$key.$v.$r.json" >/dev/null
    done
  done
  python3 - "$work" "$key" "$rounds" <<'PY'
import json, statistics, sys
work, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
med = {}
for v in ("old", "new"):
    xs = [json.load(open(f"{work}/{key}.{v}.{r}.json"))["step_ms"] for r in range(1, n + 1)]
    med[v] = statistics.median(xs)
    print(f"{key} {v}: {', '.join(f'{x:.2f}' for x in xs)} ms, median {med[v]:.2f}")
print(f"{key} old/new {med['old'] / med['new']:.3f}")
PY
done

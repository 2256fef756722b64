#!/usr/bin/env bash
# Two builds of partita planning the same training cases on cpu:0 + cpu:1 (`partita plan --train --cost
# roofline`, every strategy: what `optimize` asks of the planner), the binaries alternating ROUNDS times;
# prints each binary's median wall seconds per model. Used for changes to the memory or cost model's inner
# queries (docs/status.md: the returned gradients' per-cut lists).
#   bash bench/plan_time.sh OLD_PARTITA NEW_PARTITA [ROUNDS]
# e.g. keep a copy of build/apps/partita/partita before the change, rebuild, then compare the two.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bash bench/plan_time.sh OLD_PARTITA NEW_PARTITA [ROUNDS]" >&2; exit 2; }
old=$1 new=$2 rounds=${3:-5}
for p in "$old" "$new"; do [ -x "$p" ] || { echo "plan_time: $p is not an executable" >&2; exit 2; }; done
models="${PARTITA_BUILD_DIR:-build}/models"
[ -f "$models/zoo.json" ] || { echo "plan_time: no zoo at $models (scripts/build makes build/models)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for c in "gpt 8x128:i64:2048" "resnet18 2x3x112x112" "mobilenet_v2 2x3x112x112"; do
  read -r name input <<<"$c"
  for r in $(seq "$rounds"); do
    for side in old new; do
      bin=$old
      [ "$side" = new ] && bin=$new
      start=$(date +%s%N)
      "$bin" -q plan "$models/$name.pt" --input "$input" --devices cpu:0,cpu:1 --train --cost roofline \
        --json "$work/plan.json" >/dev/null
      echo $(($(date +%s%N) - start)) >>"$work/$side"
    done
  done
  for side in old new; do
    echo "$name $side $(sort -n "$work/$side" | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)] / 1e9}') s (median of $rounds)"
  done
  rm -f "$work/old" "$work/new"
done

#!/usr/bin/env bash
# OMP_WAIT_POLICY=PASSIVE against libgomp's default, alternating, for plain LibTorch at its best thread setting
# and partita's plan (both from `partita optimize --json`: baseline_ms, plan_ms). libgomp reads the variable
# when it loads, so each setting needs its own process. Run it with nothing else on the machine.
#   bash bench/omp_wait_policy.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
build="${PARTITA_BUILD_DIR:-build}"
p="$build/apps/partita/partita"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for spec in "mlp 256x64 --train" "cnn 32x3x32x32 --train" "cnn 32x3x32x32" "gpt 2x128:i64:2048" \
  "resnet18 8x3x112x112"; do
  set -- $spec
  for r in $(seq "$rounds"); do
    for policy in default passive; do
      if [ "$policy" = passive ]; then pre=(env OMP_WAIT_POLICY=PASSIVE); else pre=(env); fi
      "${pre[@]}" "$p" -q optimize "$build/models/$1.pt" --input "$2" ${3:-} --rounds 2 --out "$out/opt" \
        --json "$out/opt.json" >/dev/null
      python3 -c "import json;j=json.load(open('$out/opt.json'));print('$1 $2 ${3:-} $policy round $r:', \
'plain %.2f ms, plan %.2f ms' % (j['baseline_ms'], j['plan_ms']))"
    done
  done
done

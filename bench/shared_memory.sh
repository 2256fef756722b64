#!/usr/bin/env bash
# Collectives and point-to-point messages between two processes of this host through shared memory against
# Gloo's loopback TCP: for each case, one plan for cpu:0 + cpu:1 run by `partita launch -n 2` with
# PARTITA_SHARED_MEMORY=1 (the default) and =0, alternating, ROUNDS rounds of 20 steps each; prints every
# round's step time (`partita run`'s step_ms, a median of its round), the median of the rounds and the ratio,
# and writes the table into docs/benchmarks.md ("## Collectives through shared memory"). Run it with nothing
# else on the machine.
#   bash bench/shared_memory.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
build="${PARTITA_BUILD_DIR:-build}"
p="$build/apps/partita/partita"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# model input mode strategy
cases=("mlp 32x64 train tensor" "gpt 8x128:i64:2048 train tensor" "gpt 8x128:i64:2048 infer tensor"
  "gpt 8x128:i64:2048 train data" "cnn 8x3x32x32 train data" "mlp 32x64 train pipeline"
  "gpt 8x128:i64:2048 train pipeline" "gpt 8x128:i64:2048 infer pipeline")
for c in "${cases[@]}"; do
  read -r model input mode strategy <<<"$c"
  key="$model-$mode-$strategy"
  train=()
  [ "$mode" = train ] && train=(--train --optimizer sgd_momentum)
  extra=(--all-devices)
  [ "$strategy" = pipeline ] && extra=(--microbatches 4)
  [ "$strategy" = tensor ] && extra=()
  "$p" -q plan "$build/models/$model.pt" --input "$input" --devices cpu:0,cpu:1 --strategy "$strategy" \
    "${extra[@]}" "${train[@]}" --json "$work/$key.plan.json" >/dev/null
  run_train=()
  [ "$mode" = train ] && run_train=(--train)
  for r in $(seq "$rounds"); do
    for shm in 1 0; do
      PARTITA_SHARED_MEMORY=$shm "$p" launch -n 2 -- "$p" -q run "$build/models/$model.pt" --input "$input" \
        --plan "$work/$key.plan.json" "${run_train[@]}" --steps 20 --json "$work/$key.$shm.$r.json" >/dev/null
    done
  done
done
python3 - "$work" "$rounds" "${cases[@]}" <<'PY' | tee "$work/table.md"
import json, statistics, sys
work, rounds, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("| model | input | mode | plan | shared memory: rounds (ms) | median | Gloo: rounds (ms) | median | Gloo / shared memory |")
print("|---|---|---|---|---|---|---|---|---|")
for c in cases:
    model, inp, mode, strategy = c.split()
    key = f"{model}-{mode}-{strategy}"
    med, text = {}, {}
    for shm in ("1", "0"):
        runs = []
        for r in range(1, rounds + 1):
            j = json.load(open(f"{work}/{key}.{shm}.{r}.json"))
            want = "shared_memory" if shm == "1" else "gloo"
            got = j["collectives"]
            assert all(v == want for v in got.values()), (key, shm, got)
            runs.append(j["step_ms"])
        med[shm] = statistics.median(runs)
        text[shm] = ", ".join(f"{x:.2f}" for x in runs)
    print(f"| {model} | {inp} | {mode} | {strategy} | {text['1']} | {med['1']:.2f} | {text['0']} | "
          f"{med['0']:.2f} | {med['0'] / med['1']:.2f}x |")
PY
{
  echo "## Collectives through shared memory"
  echo
  echo "\`bash bench/shared_memory.sh $rounds\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')):"
  echo "the planner's plan for cpu:0 + cpu:1 run by \`partita launch -n 2\` (one process per device; a pipeline: one"
  echo "per stage, 4 microbatches; data plans made with --all-devices), the ranks' all-reduces, tensor-group"
  echo "all-gathers and a pipeline's activations and gradients (point to point) through shared memory (the default)"
  echo "or through Gloo over loopback TCP (PARTITA_SHARED_MEMORY=0), alternating, rounds of 20 steps (\`partita run\`"
  echo "step_ms, each a median of its round; SGD with momentum)."
  echo
  cat "$work/table.md"
} | python3 bench/md_section.py docs/benchmarks.md "## Collectives through shared memory"

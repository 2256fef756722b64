#!/usr/bin/env bash
# How much the engine workers' spinning before they sleep (libs/runtime/src/spin_condition.h) saves, and what
# it costs in CPU time: each case's plan for cpu:0 + cpu:1 in one process (the planner's, with the strategy
# forced; SGD with momentum for training) run by `partita run` with PARTITA_SPIN_US=0 (workers sleep at once)
# and with the default window, alternating, ROUNDS rounds each. Prints the table and writes it into
# docs/benchmarks.md ("## Waiting between engine workers"). Run it with nothing else on the machine.
#   bash bench/spin_wait.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
build="${PARTITA_BUILD_DIR:-build}"
p="$build/apps/partita/partita"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# model input mode strategy steps
cases=("mlp 32x64 infer tensor 200" "mlp 32x64 infer pipeline 200" "mlp 32x64 train tensor 100"
  "mlp 32x64 train pipeline 100" "branchy 8x3x32x32 infer branch 20" "cnn 8x3x32x32 train data 40"
  "gpt 2x128:i64:2048 infer tensor 20" "gpt 8x128:i64:2048 train data 6")
for c in "${cases[@]}"; do
  read -r model input mode strategy steps <<<"$c"
  train=()
  [ "$mode" = train ] && train=(--train --optimizer sgd_momentum)
  extra=()
  [ "$strategy" = pipeline ] && extra=(--microbatches 4)
  [ "$strategy" = data ] && extra=(--all-devices)
  "$p" -q plan "$build/models/$model.pt" --input "$input" --devices cpu:0,cpu:1 --strategy "$strategy" \
    "${extra[@]}" "${train[@]}" --json "$work/$model-$mode-$strategy.plan.json" >/dev/null
done
echo "spin_wait: ${#cases[@]} cases x $rounds rounds x 2 settings" >&2
python3 - "$p" "$build/models" "$work" "$rounds" "${cases[@]}" <<'PY' | tee "$work/table.md"
import json, os, resource, statistics, subprocess, sys
p, models, work, rounds, cases = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
settings = [("0", "sleep at once"), ("", "spin (default)")]
results = {}  # (case, setting) -> [(step_ms, cpu_s)]
for r in range(rounds):
    for c in cases:
        model, inp, mode, strategy, steps = c.split()
        for value, _ in settings:
            env = dict(os.environ)
            env.pop("PARTITA_SPIN_US", None)
            if value:
                env["PARTITA_SPIN_US"] = value
            out = f"{work}/run.json"
            cmd = [p, "-q", "run", f"{models}/{model}.pt", "--input", inp, "--plan",
                   f"{work}/{model}-{mode}-{strategy}.plan.json", "--steps", steps, "--json", out]
            if mode == "train":
                cmd.append("--train")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            results.setdefault((c, value), []).append((json.load(open(out))["step_ms"], cpu))
    print(f"spin_wait: round {r + 1}/{rounds} done", file=sys.stderr)
print("| model | input | mode | plan | steps | sleep at once: rounds (ms) | median | spin: rounds (ms) | median | "
      "spin / sleep | CPU s per run, sleep / spin (medians) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
ratios = []
for c in cases:
    model, inp, mode, strategy, steps = c.split()
    sleep, spin = results[(c, "0")], results[(c, "")]
    ms = lambda rs: statistics.median(x for x, _ in rs)
    cpu = lambda rs: statistics.median(y for _, y in rs)
    ratio = ms(spin) / ms(sleep)
    ratios.append(ratio)
    print(f"| {model} | {inp} | {mode} | {strategy} | {steps} | {', '.join(f'{x:.3g}' for x, _ in sleep)} | "
          f"{ms(sleep):.3g} | {', '.join(f'{x:.3g}' for x, _ in spin)} | {ms(spin):.3g} | {ratio:.2f}x | "
          f"{cpu(sleep):.2f} / {cpu(spin):.2f} |")
print()
print(f"Step time with spinning over sleeping at once: median {statistics.median(ratios):.2f}x "
      f"(range {min(ratios):.2f}x to {max(ratios):.2f}x).")
PY
{
  echo "## Waiting between engine workers"
  echo
  echo "\`bash bench/spin_wait.sh $rounds\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')):"
  echo "the planner's plan for cpu:0 + cpu:1 (strategy forced; training with SGD with momentum; a pipeline: 4"
  echo "microbatches; data plans with --all-devices) run in one process by \`partita run\`, its workers sleeping"
  echo "at once when they wait for each other (PARTITA_SPIN_US=0, the engine before 2026-12-05) or spinning for"
  echo "the default window first, alternating (\`partita run\` step_ms, each a median of its round's steps). CPU"
  echo "s: user + system time of the whole \`partita run\` process (loading the model included)."
  echo
  cat "$work/table.md"
} | python3 bench/md_section.py docs/benchmarks.md "## Waiting between engine workers"

#!/usr/bin/env bash
# What splitting the optimizer step among a plan's CPU workers (libs/runtime/src/optimizer_parts.h) saves:
# two builds of partita, OLD (one worker steps every parameter) and NEW, run the same training plans for
# cpu:0 + cpu:1 in one process (NEW's plan, strategy forced; Adam; a pipeline: 4 microbatches; data plans with
# --all-devices), alternating, ROUNDS rounds each, every run traced: `partita run` step_ms (a median of the
# round's steps) and the update's span (from the first optimizer task's start to the last one's end in a step,
# a median of the round's steps). Prints the table and writes it into docs/benchmarks.md ("## Optimizer step split among CPU workers"). Run
# it with nothing else on the machine.
#   bash bench/optimizer_split.sh OLD_PARTITA NEW_PARTITA [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bash bench/optimizer_split.sh OLD_PARTITA NEW_PARTITA [ROUNDS]" >&2; exit 2; }
old=$1 new=$2 rounds=${3:-5}
for p in "$old" "$new"; do [ -x "$p" ] || { echo "optimizer_split: $p is not an executable" >&2; exit 2; }; done
models="${PARTITA_BUILD_DIR:-build}/models"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# model input strategy steps
cases=("mlp 32x64 data 100" "mlp 32x64 pipeline 100" "mlp 32x64 tensor 100" "cnn 8x3x32x32 data 40"
  "branchy 8x3x32x32 branch 20" "gpt 8x128:i64:2048 data 6")
for c in "${cases[@]}"; do
  read -r model input strategy steps <<<"$c"
  extra=()
  [ "$strategy" = pipeline ] && extra=(--microbatches 4)
  [ "$strategy" = data ] && extra=(--all-devices)
  "$new" -q plan "$models/$model.pt" --input "$input" --devices cpu:0,cpu:1 --strategy "$strategy" \
    "${extra[@]}" --train --optimizer adam --json "$work/$model-$strategy.plan.json" >/dev/null
done
echo "optimizer_split: ${#cases[@]} cases x $rounds rounds x 2 binaries" >&2
python3 - "$old" "$new" "$models" "$work" "$rounds" "${cases[@]}" <<'PY' | tee "$work/table.md"
import json, statistics, subprocess, sys
binaries = {"old": sys.argv[1], "new": sys.argv[2]}
models, work, rounds, cases = sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6:]
results = {}  # (case, binary) -> [(step_ms, update_us)]

def update_span_us(trace):
    spans = {}  # step -> [first start, last end]
    for e in json.load(open(trace))["traceEvents"]:
        if e.get("ph") == "X" and e.get("cat") == "optimizer":
            s = spans.setdefault(e["args"]["step"], [e["ts"], e["ts"] + e["dur"]])
            s[0], s[1] = min(s[0], e["ts"]), max(s[1], e["ts"] + e["dur"])
    return statistics.median(b - a for a, b in spans.values())

for r in range(rounds):
    for c in cases:
        model, inp, strategy, steps = c.split()
        for v, p in binaries.items():
            out, trace = f"{work}/run.json", f"{work}/trace.json"
            subprocess.run([p, "-q", "run", f"{models}/{model}.pt", "--input", inp, "--plan",
                            f"{work}/{model}-{strategy}.plan.json", "--train", "--steps", steps,
                            "--json", out, "--trace", trace], check=True, stdout=subprocess.DEVNULL)
            results.setdefault((c, v), []).append((json.load(open(out))["step_ms"], update_span_us(trace)))
    print(f"optimizer_split: round {r + 1}/{rounds} done", file=sys.stderr)
print("| model | input | plan | steps | old: step rounds (ms) | median | new: step rounds (ms) | median | "
      "new / old | update old -> new (us, medians) |")
print("|---|---|---|---|---|---|---|---|---|---|")
ratios = []
for c in cases:
    model, inp, strategy, steps = c.split()
    o, n = results[(c, "old")], results[(c, "new")]
    med = lambda rs, i: statistics.median(x[i] for x in rs)
    ratio = med(n, 0) / med(o, 0)
    ratios.append(ratio)
    print(f"| {model} | {inp} | {strategy} | {steps} | {', '.join(f'{x:.3g}' for x, _ in o)} | "
          f"{med(o, 0):.3g} | {', '.join(f'{x:.3g}' for x, _ in n)} | {med(n, 0):.3g} | "
          f"{ratio:.2f}x | {med(o, 1):.0f} -> {med(n, 1):.0f} |")
print()
print(f"New over old: median {statistics.median(ratios):.2f}x (range {min(ratios):.2f}x to {max(ratios):.2f}x).")
PY
{
  echo "## Optimizer step split among CPU workers"
  echo
  echo "\`bash bench/optimizer_split.sh OLD NEW $rounds\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')):"
  echo "OLD steps every parameter on one CPU worker, NEW splits the step among the plan's CPU workers"
  echo "(libs/runtime/src/optimizer_parts.h). Both run NEW's training plan for cpu:0 + cpu:1 in one process"
  echo "(strategy forced; Adam; a pipeline: 4 microbatches; data plans with --all-devices), alternating"
  echo "(\`partita run --train --trace\` step_ms, each a median of its round's steps). Update: the span of a"
  echo "step's optimizer tasks in the trace (one on OLD, one per part on NEW), the median over rounds of each"
  echo "round's median."
  echo
  cat "$work/table.md"
} | python3 bench/md_section.py docs/benchmarks.md "## Optimizer step split among CPU workers"

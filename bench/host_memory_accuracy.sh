#!/bin/bash
# How close a plan's predicted host memory comes to what its run holds: plans each zoo model (models and inputs
# from zoo.json) with each strategy on cpu:0 + cpu:1 (--all-devices, --cost roofline), for inference and
# training, runs the plan (`partita run --json`: the CPU tensors of the model and what the run allocated, counted
# by partita's allocator) and prints predicted vs measured per row and the median |error| per strategy.
# Strategies the planner or the engine refuses for a model (a tensor split of a conv net) are listed as such.
#
#   bench/host_memory_accuracy.sh [PARTITA_BINARY] [ZOO_DIR] [STEPS]
#   defaults: build/apps/partita/partita, build/models, 3
#   STRATEGIES="pipeline ..." plans only those (default: data pipeline branch tensor); MICROBATCHES=N plans
#   with --microbatches N (default: the planner's choice).
#
# Memory is deterministic up to the allocator's timing across threads; one run per row is enough.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PARTITA=${1:-$here/build/apps/partita/partita}
ZOO=${2:-$here/build/models}
STEPS=${3:-3}
PYTHON=${PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PYTHON" - "$PARTITA" "$ZOO" "$STEPS" "$out" "${STRATEGIES:-data pipeline branch tensor}" "${MICROBATCHES:-}" <<'PY'
import json, os, statistics, subprocess, sys
partita, zoo, steps, out, strategies, microbatches = sys.argv[1:7]
strategies = strategies.split()
split = ["--microbatches", microbatches] if microbatches else []
models = json.load(open(os.path.join(zoo, "zoo.json")))
rows, refused = [], []
print(f"{'model':<13} {'mode':<6} {'strategy':<9} {'layout':<34} {'predicted':>11} {'measured':>11} {'error':>8}")
for name, m in models.items():
    for train in ([False, True] if m.get("train") else [False]):
        for strategy in strategies:
            tag = f"{name}-{train}-{strategy}"
            plan, run = os.path.join(out, tag + ".plan.json"), os.path.join(out, tag + ".run.json")
            inputs = sum((["--input", s] for s in m["input"]), [])
            mode = ["--train"] if train else []
            model = os.path.join(zoo, m["file"])

            def ran(step, *args):  # partita STEP ...; on failure, note the reason and skip the row
                r = subprocess.run([partita, "-q", step, model, *inputs, *args, *mode], capture_output=True,
                                   text=True)
                if r.returncode != 0:
                    refused.append(f"{name} {'train' if train else 'infer'} {strategy}: {step}: "
                                   f"{(r.stderr.strip().splitlines() or [''])[-1]}")
                return r.returncode == 0

            if not ran("plan", "--devices", "cpu:0,cpu:1", "--strategy", strategy, "--all-devices", "--cost",
                       "roofline", *split, "--json", plan):
                continue
            if not ran("run", "--plan", plan, "--steps", steps, "--json", run):
                continue
            p, d = json.load(open(plan)), json.load(open(run))
            layout = "+".join(f"{g['parallelism']}{len(g['devices'])}" for g in p["groups"]) + \
                f" x{len(p['stages'])}st m{p['microbatches']}"
            pred, meas = d["predicted_host_peak_bytes"], d["measured_host_peak_bytes"]
            err = (pred - meas) / meas
            rows.append(dict(strategy=strategy, error=err))
            print(f"{name:<13} {'train' if train else 'infer':<6} {strategy:<9} {layout:<34} "
                  f"{pred / 2**20:>9.2f}Mi {meas / 2**20:>9.2f}Mi {100 * err:>+7.1f}%", flush=True)
print()
for strategy in strategies:
    errs = [abs(r["error"]) for r in rows if r["strategy"] == strategy]
    if errs:
        print(f"{strategy:<9} median |error| {100 * statistics.median(errs):.1f}% over {len(errs)} rows, "
              f"worst {100 * max(errs):.1f}%")
if refused:
    print("\nnot run:")
    for line in refused:
        print("  " + line)
PY

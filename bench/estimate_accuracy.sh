#!/bin/bash
# How close `partita estimate` comes to the real step: runs `estimate --measure` over the model zoo (models and
# inputs from zoo.json) for inference and training with --cost roofline and --cost profiled, prints one row
# per run and the median absolute error per mode (time, and peak memory for training).
#
#   bench/estimate_accuracy.sh [PARTITA_BINARY] [ZOO_DIR] [DEVICE]
#   defaults: build/apps/partita/partita, build/models, cpu
#
# Targets: roofline median |error| <= 15% (inference), <= 20% (training); profiled <= 5%; training peak
# memory within 10%. The machine profile is taken from the cache (run `partita profile` first for a full
# one). These machines are shared and noisy: rerun before trusting a single figure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PARTITA=${1:-$here/build/apps/partita/partita}
ZOO=${2:-$here/build/models}
DEVICE=${3:-cpu}
PYTHON=${PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PYTHON" - "$PARTITA" "$ZOO" "$DEVICE" "$out" <<'PY'
import json, os, statistics, subprocess, sys
partita, zoo, device, out = sys.argv[1:5]
models = json.load(open(os.path.join(zoo, "zoo.json")))
rows = []
for name, m in models.items():
    for train in ([False, True] if m.get("train") else [False]):
        for cost in ["roofline", "profiled"]:
            path = os.path.join(out, f"{name}-{train}-{cost}.json")
            cmd = [partita, "-q", "estimate", os.path.join(zoo, m["file"]), "--device", device, "--cost", cost,
                   "--measure", "--json", path]
            for spec in m["input"]:
                cmd += ["--input", spec]
            if train:
                cmd.append("--train")
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{name} {'train' if train else 'infer'} {cost}: FAILED: {r.stderr.strip()}", file=sys.stderr)
                continue
            d = json.load(open(path))
            rows.append(dict(model=name, mode="train" if train else "infer", cost=cost, threads=d["threads"],
                             pred=d["predicted_ms"], meas=d["measured_ms"], err=d["time_error_pct"],
                             pmem=d["predicted_peak_bytes"], mmem=d["measured_peak_bytes"],
                             merr=d["memory_error_pct"]))
            x = rows[-1]
            print(f"{x['model']:<13} {x['mode']:<5} {x['cost']:<8} t={x['threads']} predicted {x['pred']:9.3f} ms"
                  f"  measured {x['meas']:9.3f} ms  error {x['err']:+7.1f}%  memory error {x['merr']:+7.1f}%",
                  flush=True)
print()
print(f"{'mode':<16} {'runs':>4} {'median |time error|':>20} {'target':>7} {'median |memory error|':>22}")
targets = {("infer", "roofline"): 15, ("train", "roofline"): 20, ("infer", "profiled"): 5, ("train", "profiled"): 5}
for (mode, cost), target in targets.items():
    sel = [r for r in rows if r["mode"] == mode and r["cost"] == cost]
    if not sel:
        continue
    med = statistics.median(abs(r["err"]) for r in sel)
    mem = statistics.median(abs(r["merr"]) for r in sel if r["merr"] is not None)
    ok = "met" if med <= target else "MISSED"
    print(f"{mode + ' ' + cost:<16} {len(sel):>4} {med:>19.1f}% {'<=' + str(target) + '%':>7} {mem:>21.1f}%  {ok}")
train_mem = [abs(r["merr"]) for r in rows if r["mode"] == "train" and r["cost"] == "roofline"]
if train_mem:
    med = statistics.median(train_mem)
    print(f"training peak memory: median |error| {med:.1f}% (target <= 10%: {'met' if med <= 10 else 'MISSED'})")
PY

#!/usr/bin/env bash
# Two builds of partita planning the same corpus: every zoo model at its zoo input, inference and (where the
# zoo trains it) training, each strategy (data, pipeline, branch, tensor, hybrid), threads of one process and
# the processes of `partita launch`, the planner's microbatches and one microbatch; all on cpu:0 + cpu:1 with
# --all-devices and roofline costs (deterministic, nothing measured). Prints each plan whose JSON differs (with
# its predicted step and host and device peaks, old -> new) and each refusal that differs, then a count.
# Used to show that a refactor leaves every prediction as it was, or which ones a model change moves.
#   bash bench/plan_diff.sh OLD_PARTITA NEW_PARTITA [ZOO_DIR]
# e.g. keep a copy of build/apps/partita/partita before the change, rebuild, then compare the two. About 9
# minutes a binary on 2 cores (the plans are made one at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bash bench/plan_diff.sh OLD_PARTITA NEW_PARTITA [ZOO_DIR]" >&2; exit 2; }
old=$1 new=$2 zoo=${3:-build/models}
for p in "$old" "$new"; do [ -x "$p" ] || { echo "plan_diff: $p is not an executable" >&2; exit 2; }; done
[ -f "$zoo/zoo.json" ] || { echo "plan_diff: no zoo at $zoo (scripts/build makes build/models)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${PYTHON:-/usr/bin/python3}" - "$old" "$new" "$zoo" "$work" <<'PY'
import json, os, subprocess, sys

old, new, zoo, work = sys.argv[1:5]
models = json.load(open(os.path.join(zoo, "zoo.json")))
cases = []
for name, m in models.items():
    for train in ([False, True] if m.get("train") else [False]):
        for strategy in ["data", "pipeline", "branch", "tensor", "hybrid"]:
            for processes in ["one", "launch"]:
                for microbatches in [None, 1]:
                    cases.append((name, m, train, strategy, processes, microbatches))


def plan(binary, case, out):
    name, m, train, strategy, processes, microbatches = case
    args = [binary, "-q", "plan", os.path.join(zoo, m["file"]), *sum((["--input", s] for s in m["input"]), []),
            "--devices", "cpu:0,cpu:1", "--strategy", strategy, "--all-devices", "--cost", "roofline",
            "--processes", processes, "--json", out]
    args += ["--train"] if train else []
    args += ["--microbatches", str(microbatches)] if microbatches else []
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or [""])[-1]
    return json.load(open(out)), None


def figures(d):
    hosts = d["prediction"].get("hosts", [])
    peaks = ", ".join(f"{dev} {b / 2**20:.2f}" for dev, b in d["predicted_peak_bytes"].items())
    return (f"step {d['predicted_step_ms']:.4f} ms, peaks MiB {peaks}, "
            f"host {sum(h['peak_memory_bytes'] for h in hosts) / 2**20:.2f} MiB")


differ = 0
for i, case in enumerate(cases):
    name, m, train, strategy, processes, microbatches = case
    tag = f"{name} {'train' if train else 'infer'} {strategy} {processes} m{microbatches or 'auto'}"
    print(f"[{i + 1}/{len(cases)}] {tag}", file=sys.stderr, flush=True)
    a, a_err = plan(old, case, os.path.join(work, "old.json"))
    b, b_err = plan(new, case, os.path.join(work, "new.json"))
    if a is None or b is None:
        if a_err != b_err:
            differ += 1
            print(f"{tag}: {a_err or figures(a)} -> {b_err or figures(b)}")
        continue
    if a != b:
        differ += 1
        print(f"{tag}: {figures(a)} -> {figures(b)}")
print(f"{differ} of {len(cases)} plans differ")
PY

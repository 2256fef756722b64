#!/usr/bin/env bash
# Checkpoint writes, measured: GPT decoder (zoo gpt.pt, batch 8x128) training with Adam on a 2-replica
# data-parallel plan (cpu:0 + cpu:1, one process), or with LAYOUT=pipeline on a 2-stage pipeline with one
# process per stage (partita launch -n 2: each rank saves its stage's shard, rank 0 commits), STEPS steps, side
# by side and alternating, ROUNDS times:
#   no checkpoints                     the baseline
#   --checkpoint-every K               each save written, synced and committed between two steps
#   --checkpoint-every K --checkpoint-async
#                                      each save's state copied between two steps, written by a background
#                                      thread while training goes on (the run waits for the last one)
# for K = 1 and K = 5. Per run: wall time of the whole command (model load included, the same in every column),
# the median stall of the training loop per save (checkpoint_stall_ms in run --json) and the median step. The
# cost of checkpointing = (wall - the baseline's wall) / saves. Writes the section "Checkpoint writes" (or
# "Checkpoint writes, pipeline across processes") of docs/benchmarks.md (or $OUT).
#
#   bench/checkpoint_async.sh [BUILD_DIR]      ROUNDS=3 STEPS=20 LAYOUT=data by default
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
partita=$build/apps/partita/partita
zoo=$build/models
out=${OUT:-docs/benchmarks.md}
rounds=${ROUNDS:-3}
steps=${STEPS:-20}
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
layout=${LAYOUT:-data}
case "$layout" in
  data) launch=() ;;
  pipeline) launch=(launch -n 2 -- partita) ;;
  *) echo "checkpoint_async.sh: LAYOUT=$layout: use data or pipeline" >&2 && exit 2 ;;
esac
model=(gpt.pt --input 8x128:i64:2048)
$partita -q plan "$zoo/${model[0]}" "${model[@]:1}" --devices cpu:0,cpu:1 --strategy "$layout" --all-devices \
  --train --json "$tmp/plan.json" >/dev/null
run=("${launch[@]}" -q run "$zoo/${model[0]}" "${model[@]:1}" --train --plan "$tmp/plan.json" --steps "$steps"
  --warmup 0)
timed() {  # NAME ARGS...: one run, its wall seconds into NAME.wall, its --json into NAME.json
  local name=$1
  shift
  rm -rf "$tmp/ckpt"
  local t0 t1
  t0=$(date +%s.%N)
  $partita "${run[@]}" "$@" --json "$tmp/$name.json" >/dev/null
  t1=$(date +%s.%N)
  $py -c "print($t1 - $t0)" >"$tmp/$name.wall"
}
for r in $(seq 1 "$rounds"); do
  echo "checkpoint bench: round $r/$rounds" >&2
  timed "none-$r"
  for k in 1 5; do
    timed "sync$k-$r" --checkpoint-dir "$tmp/ckpt" --checkpoint-every "$k"
    timed "async$k-$r" --checkpoint-dir "$tmp/ckpt" --checkpoint-every "$k" --checkpoint-async
  done
done
$py - "$tmp" "$rounds" "$out" "$steps" "$layout" <<'PY'
import datetime, json, os, statistics, subprocess, sys
tmp, rounds, out, steps, layout = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
med = statistics.median
def runs(name):
    for r in range(1, rounds + 1):
        yield float(open(os.path.join(tmp, f"{name}-{r}.wall")).read()), json.load(open(os.path.join(tmp, f"{name}-{r}.json")))
base = med(w for w, _ in runs("none"))
base_step = med(d["step_ms"] for _, d in runs("none"))
cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
title = "## Checkpoint writes" + ("" if layout == "data" else ", pipeline across processes")
how = ("a 2-replica data-parallel plan (cpu:0 + cpu:1, one process)" if layout == "data" else
       "a 2-stage pipeline plan (cpu:0 + cpu:1, one process per stage through `partita launch -n 2`; each rank "
       "saves its stage's shard, rank 0 commits; stall and step: rank 0's)")
lines = [title, "",
         f"Produced by `{'LAYOUT=pipeline ' if layout != 'data' else ''}bench/checkpoint_async.sh` on "
         f"{datetime.date.today()} ({cpu}, {os.cpu_count()} cores), "
         f"{rounds} alternating rounds. GPT decoder (zoo `gpt.pt`, batch 8x128), training with Adam, {steps} steps on "
         f"{how}; a checkpoint holds 48.6 MiB (weights and "
         "both Adam moments). Wall = the whole command, model load included (medians over rounds); cost per save = "
         "(wall - wall without checkpoints) / saves; stall = how long the training loop stood still per save "
         "(`checkpoint_stall_ms`); step = median step time (the steps during a background write are slower: it "
         "shares the two cores).", "",
         f"Without checkpoints: wall {base:.2f} s (all: {', '.join(f'{w:.2f}' for w, _ in runs('none'))}), "
         f"step {base_step:.1f} ms.", "",
         "| every | writes | wall s | cost per save ms | stall per save ms (median) | step ms | all walls |",
         "|---|---|---|---|---|---|---|"]
for k in (1, 5):
    saves = len(range(k, steps + 1, k)) + (0 if steps % k == 0 else 1)
    for mode, label in (("sync", "synchronous"), ("async", "`--checkpoint-async`")):
        rr = list(runs(f"{mode}{k}"))
        wall = med(w for w, _ in rr)
        stall = med(s for _, d in rr for s in d["checkpoint_stall_ms"])
        step = med(d["step_ms"] for _, d in rr)
        lines.append(f"| {k} | {label} | {wall:.2f} | {(wall - base) * 1000 / saves:.0f} | {stall:.1f} | {step:.1f} | "
                     f"{', '.join(f'{w:.2f}' for w, _ in rr)} |")
if any(l.split(" | ")[3].startswith("-") for l in lines if l.startswith("| ") and l[2].isdigit()):
    lines += ["", "A negative cost: the walls without checkpoints varied more between rounds than checkpointing "
              "costs; compare the stalls, or rerun with more ROUNDS."]
lines.append("")
subprocess.run([sys.executable, "bench/md_section.py", out, title], input="\n".join(lines),
               text=True, check=True)
print("\n".join(lines))
PY

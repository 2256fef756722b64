# Checkpoints and resume (`partita run --checkpoint-dir D --checkpoint-every K [--resume]`): a run that is stopped
# or killed and then resumed gives the same 20 losses as an uninterrupted run (relative difference <= 1e-6) —
# MLP with Adam and with SGD+momentum (data parallel in one process), a 2-stage pipeline in one process,
# `partita launch -n 2` data parallel (rank 0 writes) and a 2-process pipeline (each rank writes its stage), and
# checkpoints written in the background (--checkpoint-async);
# mismatched or damaged checkpoints are refused with one line.
source "$(dirname "$0")/lib.sh"
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores for cpu:0 and cpu:1 (skipped)"; exit 0; }
MLP=(run "$ZOO/mlp.pt" --input 8x64 --train)
# resumed_losses FULL.json RESUMED.json FROM: 20 losses each, equal within 1e-6 relative; RESUMED resumed after step FROM
resumed_losses() {
  "$PYTHON" - "$1" "$2" "$3" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
x, y = a["losses"], b["losses"]
assert len(x) == len(y) == 20, (len(x), len(y))
worst = max(abs(p - q) / max(abs(p), 1e-30) for p, q in zip(x, y))
assert worst <= 1e-6, (worst, x, y)
assert b.get("resumed_from_step") == int(sys.argv[3]), b.get("resumed_from_step")
assert len(b["step_ms_all"]) == 20 - int(sys.argv[3]), len(b["step_ms_all"])
assert x[-1] < x[0], "loss should fall"
print(f"max relative difference {worst:.1e}")
PY
}
latest() { cat "$1/LATEST"; }

"$PARTITA" plan "$ZOO/mlp.pt" --input 8x64 --devices cpu:0,cpu:1 --strategy data --all-devices --train --json "$WORK/adam.plan.json" \
  >/dev/null || fail "plan data"
[ "$(json_get "$WORK/adam.plan.json" "d['optimizer']")" = adam ] || fail "the default optimizer should be adam"
"$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); d['optimizer']='sgd_momentum'; json.dump(d, open(sys.argv[2],'w'))" \
  "$WORK/adam.plan.json" "$WORK/sgd.plan.json"
"$PARTITA" plan "$ZOO/mlp.pt" --input 8x64 --devices cpu:0,cpu:1 --strategy pipeline --train \
  --json "$WORK/pipe.plan.json" >/dev/null || fail "plan pipeline"
[ "$(json_get "$WORK/pipe.plan.json" "len(d['stages'])")" = 2 ] || fail "want a 2-stage pipeline plan"

for kind in adam sgd pipe; do
  plan="$WORK/$kind.plan.json"
  "$PARTITA" "${MLP[@]}" --plan "$plan" --steps 20 --warmup 0 --json "$WORK/$kind.full.json" >/dev/null \
    || fail "$kind: uninterrupted run"
  # Killed: the process dies before its 13th step; the last checkpoint is the one after step 10.
  rc=0
  PARTITA_FAULT_EXIT_AT_STEP=12 "$PARTITA" "${MLP[@]}" --plan "$plan" --steps 20 --checkpoint-dir "$WORK/$kind.killed" \
    --checkpoint-every 5 >/dev/null 2>"$WORK/$kind.killed.err" || rc=$?
  [ "$rc" -ne 0 ] && grep -q "test hook: exits at step 12" "$WORK/$kind.killed.err" || fail "$kind: the kill hook did not fire"
  [ "$(latest "$WORK/$kind.killed")" = step-00000010 ] || fail "$kind: want the checkpoint of step 10"
  "$PARTITA" "${MLP[@]}" --plan "$plan" --steps 20 --checkpoint-dir "$WORK/$kind.killed" --checkpoint-every 5 --resume \
    --json "$WORK/$kind.killed.json" >/dev/null || fail "$kind: resume after kill"
  resumed_losses "$WORK/$kind.full.json" "$WORK/$kind.killed.json" 10 || fail "$kind: killed+resumed losses differ"
  [ "$(latest "$WORK/$kind.killed")" = step-00000020 ] || fail "$kind: want the final checkpoint"
  # Stopped: 10 steps (checkpoints after 5 and 10), then resumed to 20 with another checkpoint interval.
  "$PARTITA" "${MLP[@]}" --plan "$plan" --steps 10 --checkpoint-dir "$WORK/$kind.stopped" --checkpoint-every 5 \
    >/dev/null || fail "$kind: first 10 steps"
  "$PARTITA" "${MLP[@]}" --plan "$plan" --steps 20 --checkpoint-dir "$WORK/$kind.stopped" --checkpoint-every 3 --resume \
    --json "$WORK/$kind.stopped.json" >/dev/null || fail "$kind: resume after stop"
  resumed_losses "$WORK/$kind.full.json" "$WORK/$kind.stopped.json" 10 || fail "$kind: stopped+resumed losses differ"
  [ "$(ls "$WORK/$kind.stopped")" = "$(printf 'LATEST\nstep-00000020')" ] || fail "$kind: old checkpoints should go"
done
"$PYTHON" -c "import json,sys; a,b=(json.load(open(p))['losses'] for p in sys.argv[1:]); assert a[1:] != b[1:]" \
  "$WORK/adam.full.json" "$WORK/sgd.full.json" || fail "adam and sgd_momentum runs should differ"

# Stopped by SIGTERM (a scheduler's): the run saves the steps done, says so in one line and exits 1; resumed, it
# gives the uninterrupted run's losses. The hook raises SIGTERM after the run's step K (counted from 0): K=11
# leaves 12 steps (between checkpoints), K=9 leaves 10 (saved already: no second save), and in the background
# (--checkpoint-async) the run waits for the write.
for case in "11 12" "9 10" "11 12 --checkpoint-async"; do
  set -- $case
  dir="$WORK/term-$1${3:-}"
  rc=0
  PARTITA_FAULT_SIGNAL_AT_STEP=$1 "$PARTITA" "${MLP[@]}" --plan "$WORK/adam.plan.json" --steps 20 --checkpoint-dir "$dir" \
    --checkpoint-every 5 ${3:-} >/dev/null 2>"$WORK/term.err" || rc=$?
  [ "$rc" -eq 1 ] || fail "SIGTERM $case: want exit status 1, got $rc"
  [ "$(cat "$WORK/term.err")" = "partita: error: stopped by a signal after step $2 of 20; checkpoint saved in $dir: continue with --resume" ] \
    || fail "SIGTERM $case: $(cat "$WORK/term.err")"
  [ "$(latest "$dir")" = "$(printf 'step-%08d' "$2")" ] || fail "SIGTERM $case: want the checkpoint of step $2, got $(latest "$dir")"
  "$PARTITA" "${MLP[@]}" --plan "$WORK/adam.plan.json" --steps 20 --checkpoint-dir "$dir" --checkpoint-every 5 --resume \
    --json "$WORK/term.json" >/dev/null || fail "SIGTERM $case: resume"
  resumed_losses "$WORK/adam.full.json" "$WORK/term.json" "$2" || fail "SIGTERM $case: stopped+resumed losses differ"
done

# In the background (--checkpoint-async): the same losses, and the run waits for its last save. Killed before
# step 13, the save of step 10 may still be being written and die with the process: LATEST then names step 5's
# checkpoint (never a partial one), and resuming from either gives the same losses.
async=(--plan "$WORK/adam.plan.json" --steps 20 --checkpoint-every 5 --checkpoint-async)
"$PARTITA" "${MLP[@]}" "${async[@]}" --checkpoint-dir "$WORK/async" --json "$WORK/async.json" >/dev/null \
  || fail "async: 20 steps"
[ "$(latest "$WORK/async")" = step-00000020 ] || fail "async: want the final checkpoint, got $(latest "$WORK/async")"
"$PYTHON" - "$WORK/adam.full.json" "$WORK/async.json" <<'PY' || fail "async: losses or stalls"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["losses"] == b["losses"], (a["losses"], b["losses"])
assert len(b["checkpoint_stall_ms"]) == 4, b["checkpoint_stall_ms"]
PY
rc=0
PARTITA_FAULT_EXIT_AT_STEP=12 "$PARTITA" "${MLP[@]}" "${async[@]}" --checkpoint-dir "$WORK/async.killed" >/dev/null \
  2>"$WORK/async.killed.err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "test hook: exits at step 12" "$WORK/async.killed.err" || fail "async: the kill hook did not fire"
from=$(latest "$WORK/async.killed")
case "$from" in step-00000005 | step-00000010) ;; *) fail "async: want the checkpoint of step 5 or 10, got '$from'" ;; esac
"$PARTITA" "${MLP[@]}" "${async[@]}" --checkpoint-dir "$WORK/async.killed" --resume --json "$WORK/async.killed.json" \
  >/dev/null || fail "async: resume after kill"
resumed_losses "$WORK/adam.full.json" "$WORK/async.killed.json" $((10#${from#step-})) || fail "async: killed+resumed losses differ"
echo "async: killed at step 12, resumed from $from"

# Random draws (the stochastic model: dropout of every kind, VAE noise, bernoulli units; a 2-stage pipeline with
# checkpointing, in one process): the checkpoint keeps the generators' states, so a killed and resumed run draws
# what the uninterrupted one drew and its 12 losses are the same (they were not before it kept them).
"$PARTITA" plan "$ZOO/stochastic.pt" --input 8x32 --devices cpu:0,cpu:1 --strategy pipeline --all-devices --train \
  --cost roofline --json "$WORK/draws.plan.json" >/dev/null || fail "plan stochastic"
"$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); [s.update(checkpointing='full') for s in d['stages']]; json.dump(d, open(sys.argv[1],'w'))" \
  "$WORK/draws.plan.json"
DRAWS=(run "$ZOO/stochastic.pt" --input 8x32 --train --plan "$WORK/draws.plan.json" --steps 12 --seed 3)
"$PARTITA" "${DRAWS[@]}" --warmup 0 --json "$WORK/draws.full.json" >/dev/null || fail "draws: uninterrupted run"
rc=0
PARTITA_FAULT_EXIT_AT_STEP=6 "$PARTITA" "${DRAWS[@]}" --checkpoint-dir "$WORK/draws" --checkpoint-every 4 >/dev/null \
  2>"$WORK/draws.killed.err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "test hook: exits at step 6" "$WORK/draws.killed.err" || fail "draws: the kill hook did not fire"
[ "$(latest "$WORK/draws")" = step-00000004 ] || fail "draws: want the checkpoint of step 4"
"$PARTITA" "${DRAWS[@]}" --checkpoint-dir "$WORK/draws" --checkpoint-every 4 --resume --json "$WORK/draws.resumed.json" \
  >/dev/null || fail "draws: resume after kill"
"$PYTHON" -c "import json,sys; a,b=(json.load(open(p))['losses'] for p in sys.argv[1:]); assert len(a) == 12 and a == b, (a, b)" \
  "$WORK/draws.full.json" "$WORK/draws.resumed.json" || fail "draws: killed+resumed losses differ"

# --checkpoint-keep 3: the three newest stay; pointing LATEST back at one of them and resuming redoes the steps
# after it exactly (and drops the checkpoints of the abandoned steps).
"$PARTITA" "${MLP[@]}" --plan "$WORK/sgd.plan.json" --steps 20 --checkpoint-dir "$WORK/keep" --checkpoint-every 4 \
  --checkpoint-keep 3 >/dev/null || fail "keep: 20 steps"
[ "$(ls "$WORK/keep" | tr '\n' ' ')" = "LATEST step-00000012 step-00000016 step-00000020 " ] \
  || fail "keep: want the 3 newest checkpoints: $(ls "$WORK/keep" | tr '\n' ' ')"
echo step-00000012 >"$WORK/keep/LATEST"
"$PARTITA" "${MLP[@]}" --plan "$WORK/sgd.plan.json" --steps 20 --checkpoint-dir "$WORK/keep" --checkpoint-every 4 \
  --checkpoint-keep 3 --resume --json "$WORK/keep.json" >/dev/null || fail "keep: resume from step 12"
resumed_losses "$WORK/sgd.full.json" "$WORK/keep.json" 12 || fail "keep: losses after going back to step 12 differ"
[ "$(ls "$WORK/keep" | tr '\n' ' ')" = "LATEST step-00000012 step-00000016 step-00000020 " ] \
  || fail "keep: after going back: $(ls "$WORK/keep" | tr '\n' ' ')"

# Several processes: rank 1 dies at step 12; every rank resumes from rank 0's checkpoint of step 10.
start=$SECONDS
launch=(launch -n 2 -- partita "${MLP[@]}" --plan "$WORK/adam.plan.json" --steps 20)
"$PARTITA" "${launch[@]}" --warmup 0 --json "$WORK/dp.full.json" >/dev/null 2>"$WORK/dp.full.err" \
  || fail "launch: uninterrupted: $(tail -3 "$WORK/dp.full.err")"
rc=0
PARTITA_FAULT_EXIT_AT_STEP=12 "$PARTITA" "${launch[@]}" --checkpoint-dir "$WORK/dp" --checkpoint-every 5 \
  >/dev/null 2>"$WORK/dp.killed.err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "rank 1 exits at step 12" "$WORK/dp.killed.err" || fail "launch: the kill hook did not fire"
[ "$(latest "$WORK/dp")" = step-00000010 ] || fail "launch: want the checkpoint of step 10"
"$PARTITA" "${launch[@]}" --checkpoint-dir "$WORK/dp" --checkpoint-every 5 --resume --json "$WORK/dp.resumed.json" \
  >/dev/null 2>"$WORK/dp.resumed.err" || fail "launch: resume: $(tail -3 "$WORK/dp.resumed.err")"
resumed_losses "$WORK/dp.full.json" "$WORK/dp.resumed.json" 10 || fail "launch: killed+resumed losses differ"
# Rank 0 writes in the background; the job ends after its last save.
"$PARTITA" "${launch[@]}" --checkpoint-dir "$WORK/dp.async" --checkpoint-every 5 --checkpoint-async \
  --json "$WORK/dp.async.json" >/dev/null 2>"$WORK/dp.async.err" || fail "launch: async: $(tail -3 "$WORK/dp.async.err")"
[ "$(latest "$WORK/dp.async")" = step-00000020 ] || fail "launch: async: want the final checkpoint"
"$PYTHON" -c "import json,sys; a,b=(json.load(open(p))['losses'] for p in sys.argv[1:]); assert a == b, (a, b)" \
  "$WORK/dp.full.json" "$WORK/dp.async.json" || fail "launch: async: losses differ"

# A pipeline across processes: each rank writes its stage's shard, rank 0 commits; rank 1 dies at step 12 and
# every rank resumes its own shard of step 10.
pipe=(launch -n 2 -- partita "${MLP[@]}" --plan "$WORK/pipe.plan.json" --steps 20)
"$PARTITA" "${pipe[@]}" --warmup 0 --json "$WORK/mp.full.json" >/dev/null 2>"$WORK/mp.full.err" \
  || fail "launch pipeline: uninterrupted: $(tail -3 "$WORK/mp.full.err")"
rc=0
PARTITA_FAULT_EXIT_AT_STEP=12 "$PARTITA" "${pipe[@]}" --checkpoint-dir "$WORK/mp" --checkpoint-every 5 \
  >/dev/null 2>"$WORK/mp.killed.err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "rank 1 exits at step 12" "$WORK/mp.killed.err" \
  || fail "launch pipeline: the kill hook did not fire: $(tail -3 "$WORK/mp.killed.err")"
[ "$(latest "$WORK/mp")" = step-00000010 ] || fail "launch pipeline: want the checkpoint of step 10"
[ "$(ls "$WORK/mp/step-00000010")" = "$(printf 'manifest.json\nplan.json\nrank-0.pt\nrank-1.pt')" ] \
  || fail "launch pipeline: want one state file per rank, got $(ls "$WORK/mp/step-00000010")"
"$PARTITA" "${pipe[@]}" --checkpoint-dir "$WORK/mp" --checkpoint-every 5 --resume --json "$WORK/mp.resumed.json" \
  >/dev/null 2>"$WORK/mp.resumed.err" || fail "launch pipeline: resume: $(tail -3 "$WORK/mp.resumed.err")"
"$PYTHON" -c "import json,sys; a,b=(json.load(open(p))['losses'] for p in sys.argv[1:]); \
assert len(a) == len(b) == 20 and max(abs(x-y)/abs(x) for x,y in zip(a,b)) <= 1e-6, (a, b)" \
  "$WORK/pipe.full.json" "$WORK/mp.full.json" || fail "launch pipeline: 2 processes should match the one-process pipeline"
resumed_losses "$WORK/mp.full.json" "$WORK/mp.resumed.json" 10 || fail "launch pipeline: killed+resumed losses differ"
[ "$(ls "$WORK/mp")" = "$(printf 'LATEST\nstep-00000020')" ] || fail "launch pipeline: old checkpoints should go"
# In the background: each rank copies its stage's state and a thread of its own writes the shard; rank 0's
# gathers the shards' descriptions and commits them together. The same losses; the final checkpoint is whole.
"$PARTITA" "${pipe[@]}" --checkpoint-dir "$WORK/mp.async" --checkpoint-every 5 --checkpoint-async \
  --json "$WORK/mp.async.json" >/dev/null 2>"$WORK/mp.async.err" \
  || fail "launch pipeline: async: $(tail -3 "$WORK/mp.async.err")"
[ "$(ls "$WORK/mp.async")" = "$(printf 'LATEST\nstep-00000020')" ] \
  || fail "launch pipeline: async: want only the final checkpoint, got $(ls "$WORK/mp.async")"
[ "$(ls "$WORK/mp.async/step-00000020")" = "$(printf 'manifest.json\nplan.json\nrank-0.pt\nrank-1.pt')" ] \
  || fail "launch pipeline: async: want one state file per rank, got $(ls "$WORK/mp.async/step-00000020")"
"$PYTHON" -c "import json,sys; a,b=(json.load(open(p))['losses'] for p in sys.argv[1:]); assert a == b, (a, b)" \
  "$WORK/mp.full.json" "$WORK/mp.async.json" || fail "launch pipeline: async: losses differ"
# Rank 1 dies before step 12: the step-10 save may have died with it, never half-committed; each rank resumes
# its own shard of what LATEST names.
rc=0
PARTITA_FAULT_EXIT_AT_STEP=12 "$PARTITA" "${pipe[@]}" --checkpoint-dir "$WORK/mp.async.killed" --checkpoint-every 5 \
  --checkpoint-async >/dev/null 2>"$WORK/mp.async.killed.err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "rank 1 exits at step 12" "$WORK/mp.async.killed.err" \
  || fail "launch pipeline: async: the kill hook did not fire: $(tail -3 "$WORK/mp.async.killed.err")"
from=$(latest "$WORK/mp.async.killed")
case "$from" in step-00000005 | step-00000010) ;; *) fail "launch pipeline: async: want step 5 or 10, got '$from'" ;; esac
"$PARTITA" "${pipe[@]}" --checkpoint-dir "$WORK/mp.async.killed" --checkpoint-every 5 --checkpoint-async --resume \
  --json "$WORK/mp.async.resumed.json" >/dev/null 2>"$WORK/mp.async.resumed.err" \
  || fail "launch pipeline: async: resume: $(tail -3 "$WORK/mp.async.resumed.err")"
resumed_losses "$WORK/mp.full.json" "$WORK/mp.async.resumed.json" $((10#${from#step-})) \
  || fail "launch pipeline: async: killed+resumed losses differ"
[ "$(ls "$WORK/mp.async.killed")" = "$(printf 'LATEST\nstep-00000020')" ] \
  || fail "launch pipeline: async: leftovers after the resumed run: $(ls "$WORK/mp.async.killed")"
echo "launch pipeline: async killed at step 12, resumed from $from"
echo "launch -n 2: ten runs took $((SECONDS - start)) s"

# Refusals, one line each, naming the value and what to do.
D="$WORK/adam.killed"  # holds the checkpoint of step 20 (adam, data plan, batch 8)
expect_error "no checkpoint in $WORK/none" "$PARTITA" "${MLP[@]}" --plan "$WORK/adam.plan.json" --steps 20 \
  --checkpoint-dir "$WORK/none" --resume
expect_error "already holds a checkpoint; add --resume" "$PARTITA" "${MLP[@]}" --plan "$WORK/adam.plan.json" \
  --steps 20 --checkpoint-dir "$D"
expect_error "nothing left to run; give --steps above 20" "$PARTITA" "${MLP[@]}" --plan "$WORK/adam.plan.json" \
  --steps 20 --checkpoint-dir "$D" --resume
expect_error "was written for another plan (\"optimizer\": \"adam\", the plan has \"sgd_momentum\")" \
  "$PARTITA" "${MLP[@]}" --plan "$WORK/sgd.plan.json" --steps 30 --checkpoint-dir "$D" --resume
expect_error "was written for another plan (\"strategy\": \"data\", the plan has \"pipeline\")" \
  "$PARTITA" "${MLP[@]}" --plan "$WORK/pipe.plan.json" --steps 30 --checkpoint-dir "$D" --resume
expect_error "was written with --lr 0.001 but got 0.02" "$PARTITA" "${MLP[@]}" --plan "$WORK/adam.plan.json" \
  --steps 30 --checkpoint-dir "$D" --resume --lr 0.02
"$PARTITA" plan "$ZOO/mlp.pt" --input 16x64 --devices cpu:0,cpu:1 --strategy data --train \
  --json "$WORK/b16.plan.json" >/dev/null || fail "plan batch 16"
expect_error "was written for global batch 8 but the plan has 16" "$PARTITA" run "$ZOO/mlp.pt" --input 16x64 --train \
  --plan "$WORK/b16.plan.json" --steps 30 --checkpoint-dir "$D" --resume
"$PARTITA" plan "$ZOO/cnn.pt" --input 8x3x32x32 --devices cpu:0,cpu:1 --strategy data --train \
  --json "$WORK/cnn.plan.json" >/dev/null || fail "plan cnn"
expect_error "was written for another model ($ZOO/mlp.pt" "$PARTITA" run "$ZOO/cnn.pt" --input 8x3x32x32 --train \
  --plan "$WORK/cnn.plan.json" --steps 30 --checkpoint-dir "$D" --resume
expect_error "--warmup 2 with --checkpoint-dir" "$PARTITA" "${MLP[@]}" --plan "$WORK/adam.plan.json" --steps 30 \
  --checkpoint-dir "$D" --resume --warmup 2
expect_error "--resume, --checkpoint-every, --checkpoint-keep and --checkpoint-async need --checkpoint-dir" \
  "$PARTITA" "${MLP[@]}" --plan "$WORK/adam.plan.json" --checkpoint-async
expect_error "was written by a pipeline of 2 processes (one state file per rank, each holding its stage)" \
  "$PARTITA" "${MLP[@]}" --plan "$WORK/pipe.plan.json" --steps 30 --checkpoint-dir "$WORK/mp" --resume
state="$D/step-00000020/state.pt"
truncate -s 1000 "$state"
expect_error "state.pt has 1000 bytes but its manifest says" "$PARTITA" "${MLP[@]}" --plan "$WORK/adam.plan.json" \
  --steps 30 --checkpoint-dir "$D" --resume
echo '{"format": "partita.checkpoint", "version": 1' >"$D/step-00000020/manifest.json"
expect_error "manifest.json is not valid JSON" "$PARTITA" "${MLP[@]}" --plan "$WORK/adam.plan.json" --steps 30 \
  --checkpoint-dir "$D" --resume
finish

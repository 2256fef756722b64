# A checkpointed training job of several processes (`partita launch -n 2 -- partita run ... --checkpoint-dir D`)
# stopped by a signal: the ranks vote on the step to stop before, every rank saves it (data parallel: rank 0;
# a pipeline: each its stage), and resumed, the job gives the uninterrupted run's losses. The signal comes from
# a test hook in rank 1 only (PARTITA_FAULT_SIGNAL_AT_STEP), or from `kill` to the launcher, which passes it on;
# a second signal kills the ranks; a job without checkpoints ends at once; a SIGINT the job was started ignoring
# stays ignored. A job that draws random numbers resumes drawing what it would have, in as many processes or
# (one, two) in another number.
source "$(dirname "$0")/lib.sh"
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores for cpu:0 and cpu:1 (skipped)"; exit 0; }
MLP=(run "$ZOO/mlp.pt" --input 8x64 --train)
"$PARTITA" plan "$ZOO/mlp.pt" --input 8x64 --devices cpu:0,cpu:1 --strategy data --all-devices --train \
  --json "$WORK/data.plan.json" >/dev/null || fail "plan data"
"$PARTITA" plan "$ZOO/mlp.pt" --input 8x64 --devices cpu:0,cpu:1 --strategy pipeline --train \
  --json "$WORK/pipeline.plan.json" >/dev/null || fail "plan pipeline"

# stopped_step ERR: the step both ranks name in "stopped by a signal after step N of M" (they must agree).
stopped_step() {
  local steps
  steps=$(sed -n 's/^\[rank [01]\] partita: error: rank [01]: stopped by a signal after step \([0-9]*\) of .*; checkpoint saved in .*: continue with --resume$/\1/p' "$1" | sort -u)
  [ "$(grep -c 'stopped by a signal after step' "$1")" = 2 ] && [ "$(echo "$steps" | wc -l)" = 1 ] && [ -n "$steps" ] \
    || { fail "want both ranks to stop after one step: $(grep -v 'step [0-9]*/' "$1" | tail -5)"; echo -1; return; }
  echo "$steps"
}
# same_prefix FULL.json RESUMED.json N FROM: N losses each, equal within 1e-6 relative; RESUMED resumed after FROM.
same_prefix() {
  "$PYTHON" - "$@" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
n, start = int(sys.argv[3]), int(sys.argv[4])
x, y = a["losses"], b["losses"]
assert len(x) == len(y) == n, (len(x), len(y), n)
worst = max(abs(p - q) / max(abs(p), 1e-30) for p, q in zip(x, y))
assert worst <= 1e-6, (worst, x[start - 2:start + 2], y[start - 2:start + 2])
assert b.get("resumed_from_step") == start, b.get("resumed_from_step")
print(f"{n} losses, resumed after {start}: max relative difference {worst:.1e}")
PY
}

# finished PID: waits for the background job PID (60 s at most, then kills it and fails); sets rc to its exit
# status.
finished() {
  for _ in $(seq 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then
    fail "the job did not end within 60 s of the signal"
    kill -KILL $(children_of "$1") 2>/dev/null || true
    kill -KILL "$1" || true
  fi
  rc=0
  wait "$1" || rc=$?
}

# children_of PID: the process ids whose parent is PID (from /proc; procps may be absent).
children_of() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(sed 's/.*) //' "$p/stat" 2>/dev/null | cut -d' ' -f2)" = "$1" ] && echo "${p#/proc/}"
  done
  return 0
}
# ranks_started PID: the launcher PID has two children that run `partita run` (past their exec).
ranks_started() {
  local n=0 c
  for c in $(children_of "$1"); do
    [ "$(tr '\0' '\n' <"/proc/$c/cmdline" 2>/dev/null | sed -n 2p)" = run ] && n=$((n + 1))
  done
  [ "$n" -eq 2 ]
}

# Rank 1 alone gets SIGTERM after its 8th step (the hook counts from 0); the next vote stops both.
for kind in data pipeline; do
  plan="$WORK/$kind.plan.json"
  dir="$WORK/$kind.ck"
  rc=0
  PARTITA_FAULT_SIGNAL_AT_STEP=7 "$PARTITA" launch -n 2 -- partita "${MLP[@]}" --plan "$plan" --steps 400 \
    --checkpoint-dir "$dir" --checkpoint-every 50 >/dev/null 2>"$WORK/$kind.err" || rc=$?
  [ "$rc" -eq 1 ] || fail "$kind: want exit status 1, got $rc: $(tail -3 "$WORK/$kind.err")"
  n=$(stopped_step "$WORK/$kind.err")
  [ "$n" -ge 8 ] && [ "$n" -lt 400 ] || { fail "$kind: stopped after step $n"; continue; }
  [ "$(cat "$dir/LATEST")" = "$(printf 'step-%08d' "$n")" ] || fail "$kind: LATEST is $(cat "$dir/LATEST"), want step $n"
  "$PARTITA" launch -n 2 -- partita "${MLP[@]}" --plan "$plan" --steps 400 --checkpoint-dir "$dir" --checkpoint-every 50 \
    --resume --json "$WORK/$kind.resumed.json" >/dev/null 2>"$WORK/$kind.resumed.err" \
    || fail "$kind: resume: $(tail -3 "$WORK/$kind.resumed.err")"
  "$PARTITA" launch -n 2 -- partita "${MLP[@]}" --plan "$plan" --steps 400 --warmup 0 --json "$WORK/$kind.full.json" \
    >/dev/null 2>"$WORK/$kind.full.err" || fail "$kind: uninterrupted: $(tail -3 "$WORK/$kind.full.err")"
  same_prefix "$WORK/$kind.full.json" "$WORK/$kind.resumed.json" 400 "$n" || fail "$kind: stopped+resumed losses differ"
done

# kill -TERM to the launcher, after the checkpoint of step 100: it passes the signal on; both ranks stop after
# one step and rank 0 saves it.
dir="$WORK/term.ck"
job=(launch -n 2 -- partita "${MLP[@]}" --plan "$WORK/data.plan.json")
"$PARTITA" "${job[@]}" --steps 100000 --checkpoint-dir "$dir" --checkpoint-every 100 >/dev/null 2>"$WORK/term.err" &
pid=$!
for _ in $(seq 600); do [ -f "$dir/LATEST" ] && break; sleep 0.1; done
kill -TERM "$pid"
finished "$pid"
[ "$rc" -eq 1 ] || fail "kill -TERM: want exit status 1, got $rc: $(tail -3 "$WORK/term.err")"
grep -q "^partita launch: got SIGTERM; passed it on to the 2 processes" "$WORK/term.err" \
  || fail "kill -TERM: the launcher should say it passed the signal on: $(tail -3 "$WORK/term.err")"
grep -q "^partita: error: stopped by SIGTERM: rank 0 exited with status 1; rank 1 exited with status 1 (2 processes" \
  "$WORK/term.err" || fail "kill -TERM: launcher's last line: $(tail -1 "$WORK/term.err")"
n=$(stopped_step "$WORK/term.err")
if [ "$n" -ge 100 ] && [ "$n" -lt 100000 ]; then
  [ "$(cat "$dir/LATEST")" = "$(printf 'step-%08d' "$n")" ] || fail "kill -TERM: LATEST is $(cat "$dir/LATEST"), want step $n"
  "$PARTITA" "${job[@]}" --steps $((n + 10)) --checkpoint-dir "$dir" --resume --json "$WORK/term.resumed.json" \
    >/dev/null 2>"$WORK/term.resumed.err" || fail "kill -TERM: resume: $(tail -3 "$WORK/term.resumed.err")"
  "$PARTITA" "${job[@]}" --steps $((n + 10)) --warmup 0 --json "$WORK/term.full.json" >/dev/null 2>&1 \
    || fail "kill -TERM: uninterrupted run"
  same_prefix "$WORK/term.full.json" "$WORK/term.resumed.json" $((n + 10)) "$n" || fail "kill -TERM: resumed losses differ"
else
  fail "kill -TERM: stopped after step $n"
fi

# Random draws across processes (the stochastic model: dropout of every kind, VAE noise, bernoulli units): each
# rank's generators' states are kept (data parallel: gathered into rank 0's checkpoint; a pipeline: in each
# rank's shard), so a job whose rank 1 dies before its 7th step, resumed from step 4, draws what the
# uninterrupted one drew: the same 12 losses (without the kept states, ranks drew from their seeds again).
# A tensor-parallel job (dropout_mlp: the stochastic model's channel dropout does not split) keeps each rank's own
# and its group generator's states.
for case in data:stochastic pipeline:stochastic tensor:dropout_mlp; do
  kind=${case%%:*} model=${case#*:}
  "$PARTITA" plan "$ZOO/$model.pt" --input 8x32 --devices cpu:0,cpu:1 --strategy "$kind" --all-devices --train \
    --cost roofline --json "$WORK/draws.$kind.plan.json" >/dev/null || fail "plan $model $kind"
  draws=(launch -n 2 -- partita run "$ZOO/$model.pt" --input 8x32 --train --plan "$WORK/draws.$kind.plan.json"
    --steps 12 --seed 3)
  "$PARTITA" "${draws[@]}" --warmup 0 --json "$WORK/draws.$kind.full.json" >/dev/null 2>&1 \
    || fail "draws $kind: uninterrupted run"
  rc=0
  PARTITA_FAULT_EXIT_AT_STEP=6 "$PARTITA" "${draws[@]}" --checkpoint-dir "$WORK/draws.$kind" --checkpoint-every 4 \
    >/dev/null 2>"$WORK/draws.$kind.err" || rc=$?
  [ "$rc" -ne 0 ] && grep -q "test hook: rank 1 exits at step 6" "$WORK/draws.$kind.err" \
    || fail "draws $kind: the kill hook did not fire: $(tail -2 "$WORK/draws.$kind.err")"
  [ "$(cat "$WORK/draws.$kind/LATEST")" = step-00000004 ] || fail "draws $kind: want the checkpoint of step 4"
  "$PARTITA" "${draws[@]}" --checkpoint-dir "$WORK/draws.$kind" --checkpoint-every 4 --resume \
    --json "$WORK/draws.$kind.resumed.json" >/dev/null 2>"$WORK/draws.$kind.resumed.err" \
    || fail "draws $kind: resume: $(tail -3 "$WORK/draws.$kind.resumed.err")"
  same_prefix "$WORK/draws.$kind.full.json" "$WORK/draws.$kind.resumed.json" 12 4 \
    || fail "draws $kind: killed+resumed losses differ"
  # In another number of processes: the states are named by the worker that draws from them (stage, device),
  # so a process restores its workers' ones whatever wrote them. One process's checkpoint resumed by the two
  # ranks, and (a whole checkpoint: a pipeline's shards need as many processes) the two ranks' resumed in one.
  one=("${draws[@]:5}")
  rc=0
  PARTITA_FAULT_EXIT_AT_STEP=6 "$PARTITA" "${one[@]}" --checkpoint-dir "$WORK/draws.$kind.one" --checkpoint-every 4 \
    >/dev/null 2>"$WORK/draws.$kind.one.err" || rc=$?
  [ "$rc" -ne 0 ] && [ "$(cat "$WORK/draws.$kind.one/LATEST")" = step-00000004 ] \
    || fail "draws $kind: want one process killed at step 6: $(tail -2 "$WORK/draws.$kind.one.err")"
  "$PARTITA" "${draws[@]}" --checkpoint-dir "$WORK/draws.$kind.one" --checkpoint-every 4 --resume \
    --json "$WORK/draws.$kind.one.in2.json" >/dev/null 2>"$WORK/draws.$kind.one.err" \
    || fail "draws $kind: one process's checkpoint resumed by two: $(tail -3 "$WORK/draws.$kind.one.err")"
  same_prefix "$WORK/draws.$kind.full.json" "$WORK/draws.$kind.one.in2.json" 12 4 \
    || fail "draws $kind: one process's checkpoint resumed by two: losses differ"
  [ "$kind" != pipeline ] || continue
  rc=0
  PARTITA_FAULT_EXIT_AT_STEP=6 "$PARTITA" "${draws[@]}" --checkpoint-dir "$WORK/draws.$kind.two" \
    --checkpoint-every 4 >/dev/null 2>&1 || rc=$?
  [ "$rc" -ne 0 ] && [ "$(cat "$WORK/draws.$kind.two/LATEST")" = step-00000004 ] \
    || fail "draws $kind: want rank 1 killed at step 6 after the checkpoint of step 4"
  "$PARTITA" "${one[@]}" --checkpoint-dir "$WORK/draws.$kind.two" --checkpoint-every 4 --resume \
    --json "$WORK/draws.$kind.two.in1.json" >/dev/null 2>"$WORK/draws.$kind.two.err" \
    || fail "draws $kind: two processes' checkpoint resumed by one: $(tail -3 "$WORK/draws.$kind.two.err")"
  same_prefix "$WORK/draws.$kind.full.json" "$WORK/draws.$kind.two.in1.json" 12 4 \
    || fail "draws $kind: two processes' checkpoint resumed by one: losses differ"
done

# A launcher started ignoring SIGINT (as a script's background job starts) keeps ignoring it, and so do its
# ranks: a Ctrl-C meant for the script's foreground job stops nothing here. SIGTERM still does.
"${SIGINT_IGNORED[@]}" "$PARTITA" "${job[@]}" --steps 100000 --checkpoint-dir "$WORK/ignored.ck" --checkpoint-every 100 \
  >/dev/null 2>"$WORK/ignored.err" &
pid=$!
for _ in $(seq 600); do [ -f "$WORK/ignored.ck/LATEST" ] && break; sleep 0.1; done
ranks_started "$pid" || fail "SIGINT ignored: the ranks did not start: $(tail -3 "$WORK/ignored.err")"
kill -INT "$pid" $(children_of "$pid")
sleep 2
kill -0 "$pid" 2>/dev/null && ranks_started "$pid" \
  || fail "SIGINT ignored: the job stopped on SIGINT: $(tail -3 "$WORK/ignored.err")"
! grep -q "got SIGINT" "$WORK/ignored.err" || fail "SIGINT ignored: the launcher passed it on"
kill -TERM "$pid"
finished "$pid"
[ "$rc" -eq 1 ] && grep -q "^partita launch: got SIGTERM; passed it on to the 2 processes" "$WORK/ignored.err" \
  || fail "SIGINT ignored: SIGTERM after it: exit status $rc, $(tail -3 "$WORK/ignored.err")"

# A second signal kills: rank 1 stalls at step 5 (so no vote can end the job), the first SIGTERM is passed on
# and changes nothing, the second kills both ranks.
PARTITA_FAULT_HANG_AT_STEP=5 "$PARTITA" "${job[@]}" --steps 100 --checkpoint-dir "$WORK/hang.ck" >/dev/null \
  2>"$WORK/hang.err" &
pid=$!
for _ in $(seq 600); do grep -q "stalls at step 5" "$WORK/hang.err" && break; sleep 0.1; done
kill -TERM "$pid"
sleep 1
kill -TERM "$pid"
finished "$pid"
[ "$rc" -eq 1 ] || fail "second signal: want exit status 1, got $rc"
grep -q "^partita launch: got a second signal; killing the processes" "$WORK/hang.err" \
  || fail "second signal: $(tail -3 "$WORK/hang.err")"
grep -q "^partita: error: stopped by SIGTERM: rank 0 was killed by signal Killed; rank 1 was killed by signal Killed" \
  "$WORK/hang.err" || fail "second signal: launcher's last line: $(tail -1 "$WORK/hang.err")"

# Without checkpoints nothing is saved: the ranks end at once, and the launcher says how.
"$PARTITA" "${job[@]}" --steps 100000 >/dev/null 2>"$WORK/plain.err" &
pid=$!
for _ in $(seq 600); do ranks_started "$pid" && break; sleep 0.1; done
kill -TERM "$pid"
finished "$pid"
[ "$rc" -eq 1 ] || fail "no checkpoints: want exit status 1, got $rc"
grep -q "^partita: error: stopped by SIGTERM: rank 0 was killed by signal Terminated; rank 1 was killed by signal Terminated" \
  "$WORK/plain.err" || fail "no checkpoints: launcher's last line: $(tail -1 "$WORK/plain.err")"
finish

# partita optimize --processes launch: the device set is planned for the processes of `partita launch`, every
# candidate of two processes or more is measured as such a job, and the chosen one runs so in the final rounds
# (its trace has a row per rank, its losses are a fresh launched run's); --processes both measures candidates of
# both layouts and keeps the fastest; a job that fails names why and leaves
# the candidate out; Ctrl-C stops the job and removes the scratch folder; a scratch folder that cannot be made and
# an unknown layout are refused at once.
source "$(dirname "$0")/lib.sh"
: "${PYTHON:?}"
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores for cpu:0 and cpu:1 (skipped)"; exit 0; }

# Batch 256: a step on both cores is predicted about half one core's, so the planner's best plans for cpu:0 +
# cpu:1 use both devices (two processes each) and --devices leaves out the single-device plans optimize adds
# for the default device set: every candidate is a launched one.
opt=("$PARTITA" -q optimize "$ZOO/mlp.pt" --input 256x64 --train --devices cpu:0,cpu:1 --processes launch
  --candidates 2 --steps 2 --rounds 1)
"${opt[@]}" --out "$WORK/opt" --json "$WORK/opt.json" >"$WORK/opt.txt" || fail "optimize --processes launch"
"$PYTHON" - "$WORK/opt.json" "$WORK/opt/trace.json" "$WORK/opt/plan.json" <<'PY' || fail "optimize --processes launch: $(cat "$WORK/opt.txt")"
import json, sys
d, trace, plan = (json.load(open(p)) for p in sys.argv[1:4])
cands = d["candidates"]
assert cands and all(c["processes"] == 2 and c["layout"].endswith("(2 processes)") for c in cands), cands
assert all(c["measured_ms"] is not None and c["measured_ms"] > 0 for c in cands), cands
assert d["processes"] == 2 and d["layout"].endswith("(2 processes)"), (d["processes"], d["layout"])
assert plan["processes"] == "launch", plan["processes"]
# The final rounds ran the job: both ranks' workers, a trace row per rank beside the simulated step.
assert sorted(w["device"] for w in d["run"]["workers"]) == ["cpu:0", "cpu:1"], d["run"]["workers"]
names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
         if e.get("ph") == "M" and e.get("name") == "process_name"}
assert sorted(names.values()) == ["rank 0", "rank 1", "simulated"], names
assert len(set(names)) == 3, names
assert all(e.get("pid") in names for e in trace["traceEvents"] if e.get("ph") == "X"), "an event outside the rows"
assert len(d["run"]["losses"]) == d["steps_per_round"] and d["measured_peak_bytes"] > 0, d["run"]
PY
grep -qF "run the plan as it was measured: partita launch -n 2 -- partita run $ZOO/mlp.pt --plan $WORK/opt/plan.json --input 256x64 --train" \
  "$WORK/opt.txt" || fail "optimize does not say how to run the launched plan: $(tail -2 "$WORK/opt.txt")"
grep -qF "measured: the CPU tensor memory of its 2 processes" "$WORK/opt.txt" || fail "optimize: the peak's footnote"
# The report draws both ranks' steps (before, only the trace's process 1, rank 1, was drawn as "measured").
[ "$(grep -c 'Measured, rank [01] of the 2 processes' "$WORK/opt/report.html")" = 2 ] \
  || fail "report.html does not draw both ranks' timelines"
# The same job run by hand from the written plan starts where optimize's final run started (the file's weights,
# 3 warm-up steps): the same first loss.
"$PARTITA" launch -n 2 -- partita -q run "$ZOO/mlp.pt" --input 256x64 --plan "$WORK/opt/plan.json" --train \
  --warmup 3 --steps 1 --json "$WORK/fresh.json" >/dev/null || fail "launch the plan optimize wrote"
"$PYTHON" - "$WORK/opt.json" "$WORK/fresh.json" <<'PY' || fail "optimize's launched run is not the launched job"
import json, sys
final, fresh = json.load(open(sys.argv[1]))["run"]["losses"][0], json.load(open(sys.argv[2]))["losses"][0]
assert abs(final - fresh) <= 1e-5 * abs(fresh), (final, fresh)
PY

# --processes both: the device set planned for threads of optimize's process and for launched processes, a
# candidate of each measured, and the one measured fastest chosen, whichever layout it has.
"$PARTITA" -q optimize "$ZOO/mlp.pt" --input 256x64 --train --devices cpu:0,cpu:1 --processes both \
  --candidates 1 --steps 2 --rounds 1 --out "$WORK/both" --json "$WORK/both.json" >"$WORK/both.txt" \
  || fail "optimize --processes both"
"$PYTHON" - "$WORK/both.json" "$WORK/both/plan.json" <<'PY' || fail "optimize --processes both: $(cat "$WORK/both.txt")"
import json, sys
d, plan = (json.load(open(p)) for p in sys.argv[1:3])
cands = d["candidates"]
assert sorted(c["processes"] for c in cands) == [1, 2], cands
assert all(c["measured_ms"] is not None and c["measured_ms"] > 0 for c in cands), cands
fastest = min(cands, key=lambda c: c["measured_ms"])
assert d["layout"] == fastest["layout"] and d["processes"] == fastest["processes"], (d["layout"], cands)
assert plan["processes"] == ("launch" if d["processes"] == 2 else "one"), (plan["processes"], d["processes"])
PY

# Rank 1 of every job exits at its step 2 (a test hook): each candidate is left out with the job's own error
# line, and with none left optimize says so.
rc=0
PARTITA_FAULT_EXIT_AT_STEP=2 "${opt[@]}" --out "$WORK/fault" >/dev/null 2>"$WORK/fault.err" || rc=$?
[ "$rc" -eq 1 ] || fail "optimize with failing jobs: exit status $rc"
[ "$(grep -c "cannot run here: the launched run of 2 processes failed: \[rank 0\] partita: error: rank 0: .*rank 1 did not reach step 2" "$WORK/fault.err")" = 2 ] \
  || fail "optimize: a failed job's candidate: $(cat "$WORK/fault.err")"
[ "$(tail -1 "$WORK/fault.err")" = "partita: error: no candidate plan could run on this machine (the warnings above say why each failed)" ] \
  || fail "optimize with failing jobs: last line $(tail -1 "$WORK/fault.err")"

# Ctrl-C (SIGINT) while a job runs (rank 1 hangs at its step 2, a test hook, so the job is still in flight):
# optimize stops the job, says so in one line and removes its scratch folder; no process of the job is left.
# (Started with SIGINT at its default action, as a terminal's foreground job: a background job of this script
# ignores SIGINT, and partita leaves an ignored SIGINT ignored.)
mkdir -p "$WORK/tmp"
PARTITA_FAULT_HANG_AT_STEP=2 TMPDIR="$WORK/tmp" "${SIGINT_DEFAULT[@]}" "${opt[@]}" --out "$WORK/interrupted" \
  >/dev/null 2>"$WORK/interrupted.err" &
pid=$!
for _ in $(seq 1 600); do
  compgen -G "$WORK/tmp/partita-optimize-*/stderr.log" >/dev/null && break
  sleep 0.1
done
compgen -G "$WORK/tmp/partita-optimize-*/stderr.log" >/dev/null || fail "no launched job started: $(cat "$WORK/interrupted.err")"
sleep 1
kill -INT "$pid"
start=$SECONDS
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 1 ] || fail "interrupted optimize: exit status $rc"
[ $((SECONDS - start)) -lt 15 ] || fail "optimize took $((SECONDS - start)) s to stop after SIGINT"
grep -q "partita: error: interrupted" <(tail -1 "$WORK/interrupted.err") \
  || fail "interrupted optimize: last line $(tail -1 "$WORK/interrupted.err")"
[ -z "$(ls -A "$WORK/tmp")" ] || fail "the scratch folder was left: $(ls "$WORK/tmp")"
! pgrep -f "$WORK/tmp/partita-optimize" >/dev/null || fail "a process of the stopped job is left: $(pgrep -af "$WORK/tmp/partita-optimize")"
[ ! -e "$WORK/interrupted/metrics.json" ] || fail "an interrupted optimize wrote its results"

start=$SECONDS
TMPDIR="$WORK/missing" expect_error "cannot make a scratch folder $WORK/missing/partita-optimize-" "${opt[@]}" \
  --out "$WORK/tmpdir"
[ $((SECONDS - start)) -lt 10 ] || fail "optimize took $((SECONDS - start)) s to refuse its scratch folder"
expect_error "unknown process layout 'many': use one (threads of this process), launch (the processes of \`partita launch\`) or both" "$PARTITA" optimize "$ZOO/mlp.pt" --input 8x64 --processes many
finish

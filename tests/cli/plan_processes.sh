# partita plan --processes launch: the link between processes comes from `partita profile` (measured here,
# quick mode, private cache); a launched plan's prediction counts its messages (above the same plan in one
# process), simulate reproduces it, Gloo's link is used with PARTITA_SHARED_MEMORY=0, and `partita run` says
# which processes its prediction is for; each rank's host memory is predicted and printed beside the measured;
# a cluster file may name the links between processes. Roofline costs, so that plan and simulate agree exactly.
source "$(dirname "$0")/lib.sh"
: "${PYTHON:?}"
export XDG_CACHE_HOME="$WORK/cache" PARTITA_PROFILE_QUICK=1

"$PARTITA" profile --json "$WORK/profile.json" >/dev/null || fail "profile"
[ "$(json_get "$WORK/profile.json" "all(d[k]['latency'] >= 0 and d[k]['bandwidth'] > 0 for k in ('process_link', 'process_collective_link')) and len(d['process_messages']) == len(d['process_allreduce']) == 2")" = "True" ] \
  || fail "profile: no measured link between processes: $(json_get "$WORK/profile.json" "d.get('notes')")"

plan=("$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0,cpu:1 --strategy pipeline --microbatches 4 --train
  --cost roofline)
"${plan[@]}" --processes launch --json "$WORK/launch.json" >"$WORK/launch.txt" || fail "plan --processes launch"
grep -q "one process per stage" "$WORK/launch.txt" || fail "plan text lacks the processes: $(head -3 "$WORK/launch.txt")"
grep -q 'messages between its processes cross "shared memory between processes" .*microbenchmark.*collectives "shared memory between processes (collectives)" .*microbenchmark' "$WORK/launch.txt" \
  || fail "plan text lacks the measured link: $(grep processes: "$WORK/launch.txt")"
[ "$(json_get "$WORK/launch.json" "d['processes']")" = "launch" ] || fail "plan JSON: processes is not launch"
[ "$(json_get "$WORK/launch.json" "d['predicted_step_ms'] > d['predicted_step_ms_one_process'] > 0")" = "True" ] \
  || fail "a pipeline's messages between processes cost nothing: $(json_get "$WORK/launch.json" "(d['predicted_step_ms'], d['predicted_step_ms_one_process'])")"
"${plan[@]}" --json "$WORK/one.json" >/dev/null || fail "plan (one process)"
[ "$(json_get "$WORK/one.json" "d['processes']")" = "one" ] || fail "plan JSON: processes is not one by default"

"$PARTITA" simulate "$WORK/launch.json" --json "$WORK/sim.json" >/dev/null || fail "simulate a launched plan"
[ "$(json_get "$WORK/launch.json" "d['predicted_step_ms']")" = "$(json_get "$WORK/sim.json" "d['predicted_step_ms']")" ] \
  || fail "simulate predicts a launched plan differently than plan"

PARTITA_SHARED_MEMORY=0 "${plan[@]}" --processes launch --json "$WORK/gloo.json" >"$WORK/gloo.txt" || fail "plan through Gloo"
# The profile's Gloo all-reduce fit; where it could not be measured (its note says why), the database's.
gloo_link="loopback TCP"
[ "$(json_get "$WORK/profile.json" "'loopback_link' in d")" = "True" ] && gloo_link="loopback (Gloo"
grep -qF "cross \"$gloo_link" "$WORK/gloo.txt" && grep -qF "collectives \"$gloo_link" "$WORK/gloo.txt" \
  || fail "PARTITA_SHARED_MEMORY=0: not Gloo's link ($gloo_link): $(grep processes: "$WORK/gloo.txt")"

"$PARTITA" launch -n 2 -- "$PARTITA" run "$ZOO/mlp.pt" --input 32x64 --plan "$WORK/launch.json" --train --steps 4 \
  >"$WORK/run2.txt" 2>&1 || fail "launch -n 2 run: $(tail -3 "$WORK/run2.txt")"
grep -q "the prediction counts passing data between the 2 processes" "$WORK/run2.txt" \
  || fail "a 2-process run of a launched plan does not say its prediction counts the messages"
"$PARTITA" run "$ZOO/mlp.pt" --input 32x64 --plan "$WORK/launch.json" --train --steps 4 >"$WORK/run1.txt" \
  || fail "run a launched plan in one process"
grep -q "this run is one process" "$WORK/run1.txt" || fail "a one-process run of a launched plan does not say so"

# Host memory: every process of a launched data-parallel plan loads and trains the whole model. The plan
# predicts each rank's peak (-7% here; one process's prediction for both together was -42%) and the
# machine's as their sum; `partita run` prints each rank's beside its measured one.
"$PARTITA" plan "$ZOO/mlp.pt" --input 256x64 --devices cpu:0,cpu:1 --strategy data --all-devices --train \
  --cost roofline --processes launch --json "$WORK/data.json" >/dev/null || fail "plan a launched data-parallel plan"
"$PARTITA" launch -n 2 -- "$PARTITA" run "$ZOO/mlp.pt" --input 256x64 --plan "$WORK/data.json" --train --steps 4 \
  --json "$WORK/data.run.json" >"$WORK/data.run.txt" 2>&1 || fail "launch -n 2 data-parallel run: $(tail -3 "$WORK/data.run.txt")"
"$PYTHON" - "$WORK/data.run.json" <<'PY' || fail "launched host memory: $(grep "host memory" "$WORK/data.run.txt")"
import json, sys
d = json.load(open(sys.argv[1]))
predicted, measured = d["predicted_host_peak_bytes_per_rank"], d["measured_host_peak_bytes_per_rank"]
assert len(predicted) == len(measured) == 2, (predicted, measured)
assert all(abs(p - m) <= 0.15 * m for p, m in zip(predicted, measured)), (predicted, measured)
assert d["predicted_host_peak_bytes"] == sum(predicted), (d["predicted_host_peak_bytes"], predicted)
PY
grep -q "rank 1 [0-9.]* MiB (predicted [0-9.]* MiB; model tensors .*the plan predicts [0-9.]* MiB together" \
  "$WORK/data.run.txt" || fail "run does not print each rank's predicted host memory: $(grep "host memory" "$WORK/data.run.txt")"

# A described cluster: the links between its processes are what the file names, else estimates from its CPU.
cluster=("$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --strategy pipeline --microbatches 4 --train --cost roofline
  --processes launch)
sed 's/^devices:/process_link: loopback TCP\ndevices:/' "$SRC/config/clusters/local-2core.yaml" >"$WORK/named.yaml"
"${cluster[@]}" --cluster "$WORK/named.yaml" --json "$WORK/named.json" >"$WORK/named.txt" || fail "plan on a cluster naming its process link"
grep -q 'messages between its processes cross "loopback TCP" (latency 90.0 us.*collectives "shared memory between processes (collectives)" .*estimate' "$WORK/named.txt" \
  || fail "the cluster file's process link is not used: $(grep processes: "$WORK/named.txt")"
"${cluster[@]}" --cluster "$SRC/config/clusters/local-2core.yaml" --json "$WORK/estimated.json" >"$WORK/estimated.txt" \
  || fail "plan on a cluster without process links"
grep -q 'messages between its processes cross "shared memory between processes" .*estimate' "$WORK/estimated.txt" \
  || fail "a cluster without process links is not estimated: $(grep processes: "$WORK/estimated.txt")"
# Roofline costs: over the estimate (50 us) two stages win; over Gloo's 90 us the planner keeps one stage.
[ "$(json_get "$WORK/estimated.json" "len(d['stages'])"),$(json_get "$WORK/named.json" "len(d['stages'])")" = "2,1" ] \
  || fail "the named link did not change the plan: stages $(json_get "$WORK/estimated.json" "len(d['stages'])") (estimate), $(json_get "$WORK/named.json" "len(d['stages'])") (named)"
sed 's/^devices:/process_link: loopback TPC\ndevices:/' "$SRC/config/clusters/local-2core.yaml" >"$WORK/typo.yaml"
expect_error "process_link" "${cluster[@]}" --cluster "$WORK/typo.yaml"

expect_error "unknown process layout 'threads'" "${plan[@]}" --processes threads
finish

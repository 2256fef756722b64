# Dynamic rebalancing: a 2-stage GPT pipeline on cpu:0 and cpu:1, trained 30 steps, with cpu:0 made 3x slower
# from step 10 (--inject-slowdown 0:3:10). With --rebalance the monitor sees the drift, plans again with
# cpu:0 planned 3x slower and applies the new partition by step 20; the losses stay those of the undisturbed
# run. The new partition must move work off cpu:0 and, costed for the slowdowns the monitor measured (cpu:0 at
# least 2x), be predicted within 10% of a fresh plan for that hardware (plan --device-slowdown). Not for exactly
# 3x: on this VM an injected 3x has measured 4.43x (a core's own slow stretch on top), the rebalancer rightly
# planned for what it saw, and that partition costed at 3x was 11% off (one clean-clone CI run). The drift threshold is 2x: this
# VM's own noise made a core 1.4-1.7x slower for 3 steps now and then (a rebalance before the injection failed
# one clean-clone CI run), an injected 3x measures 3x or more. (Measured throughput:
# bench/rebalance_bench.sh, not timed here.) A branch plan rebalances too (its node lists move). The plans use the roofline cost model: its predictions are the
# same in every process, so the comparison of the two partitions is not swayed by op timings that the noise of a
# busy machine moves between invocations (profiled predictions moved 360 -> 520 ms here, failing 1 run in 4).
source "$(dirname "$0")/lib.sh"
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores for cpu:0 and cpu:1 (skipped)"; exit 0; }
model=(gpt.pt --input 8x128:i64:2048)
plan=(plan "$ZOO/${model[0]}" "${model[@]:1}" --devices cpu:0,cpu:1 --strategy pipeline --microbatches 4 --train --cost roofline)
"$PARTITA" "${plan[@]}" --json "$WORK/plan.json" >/dev/null || fail "plan"
"$PARTITA" "${plan[@]}" --device-slowdown cpu:0:3 --json "$WORK/fresh.json" >/dev/null || fail "plan --device-slowdown"
[ "$(json_get "$WORK/fresh.json" "d['source']['device_slowdowns']")" = "{'cpu:0': 3.0}" ] \
  || fail "the slowed plan should record its slowdown in its source section"
run=(run "$ZOO/${model[0]}" "${model[@]:1}" --train --steps 28)
"$PARTITA" "${run[@]}" --plan "$WORK/plan.json" --json "$WORK/calm.json" >/dev/null || fail "undisturbed run"
"$PARTITA" "${run[@]}" --plan "$WORK/plan.json" --inject-slowdown 0:3:10 --rebalance --rebalance-threshold 2 --json "$WORK/rebal.json" \
  >"$WORK/rebal.out" 2>"$WORK/rebal.err" || fail "rebalanced run: $(tail -3 "$WORK/rebal.err")"
"$PYTHON" - "$WORK/plan.json" "$WORK/fresh.json" "$WORK/calm.json" "$WORK/rebal.json" "$WORK/final.json" \
  "$WORK/measured_slowdowns.txt" <<'PY' || fail "rebalance checks"
import json, re, sys
plan, fresh, calm, rebal = (json.load(open(p)) for p in sys.argv[1:5])
def nodes_on(p, dev):
    return sum(s['last'] - s['first'] + 1 for s in p['stages'] if p['groups'][s['group']]['devices'][0] == dev)
for e in rebal['rebalances']:
    print("event:", e)
applied = [e for e in rebal['rebalances'] if e['applied']]
assert applied, ('no rebalance applied', rebal['rebalances'])
first = applied[0]
# Steps count from 0 over all steps run (2 warm-up + 28); the new plan runs from first['step'] + 1 on.
assert 10 <= first['step'] and first['step'] + 1 <= 20, ('rebalanced too early or too late', first)
final = rebal['final_plan']
# The first rebalance's partition (a later one answers another drift, e.g. a busy machine slowing a core):
# it must move work off cpu:0 and, costed for the slowdowns it measured, be near a fresh plan for them.
first_plan = json.loads(json.dumps(final))
ranges = [part.split(' nodes ') for part in first['to'].split('; ')]
assert len(ranges) == len(first_plan['stages']) == 2, (first['to'], first_plan['stages'])
group_of = {g['devices'][0]: i for i, g in enumerate(first_plan['groups'])}
for stage, (device, span) in zip(first_plan['stages'], ranges):  # stages in node order; a device may move
    stage['group'] = group_of[device]
    stage['first'], stage['last'] = (int(x) for x in span.split('-'))
before, after, ideal = nodes_on(plan, 'cpu:0'), nodes_on(first_plan, 'cpu:0'), nodes_on(fresh, 'cpu:0')
assert after < before, ('work should move off the slowed cpu:0', before, after)
print(f"cpu:0 nodes: {before} before, {after} after the rebalance, {ideal} in a fresh plan for cpu:0 3x slower")
if len(applied) > 1:
    print(f"{len(applied)} rebalances applied; comparing the first one's partition ({first['to']})")
# The slowdowns the first rebalance measured and planned for: "cpu:0 4.43x slower than ... (cpu:1 1.00x) ...".
# Like the rebalancer, relative to the least slowed device.
raw = {dev: float(x) for dev, x in re.findall(r"(cpu:\d) ([0-9.]+)x", first['drift'])}
assert set(raw) == {'cpu:0', 'cpu:1'}, ('no per-device drift in the event', first)
measured = {dev: x / min(raw.values()) for dev, x in raw.items()}
assert measured['cpu:0'] >= 2.0, ('the injected 3x was not seen', first)
first_plan['source']['device_slowdowns'] = measured
json.dump(first_plan, open(sys.argv[5], 'w'))
open(sys.argv[6], 'w').write(' '.join(f"--device-slowdown {d}:{x}" for d, x in sorted(measured.items())))
PY
losses_equal "$WORK/calm.json" "$WORK/rebal.json" || fail "rebalanced run: losses"
"$PARTITA" simulate "$WORK/final.json" --json "$WORK/final_sim.json" >/dev/null || fail "simulate the final plan"
# shellcheck disable=SC2046  # one word per flag and value
"$PARTITA" "${plan[@]}" $(cat "$WORK/measured_slowdowns.txt") --json "$WORK/fresh_measured.json" >/dev/null \
  || fail "plan for the measured slowdowns"
"$PYTHON" - "$WORK/final_sim.json" "$WORK/fresh_measured.json" "$WORK/measured_slowdowns.txt" <<'PY' || fail "the rebalanced partition should be near the best one for the slowed hardware"
import json, sys
got = json.load(open(sys.argv[1]))['predicted_step_ms']
best = json.load(open(sys.argv[2]))['predicted_step_ms']
print(f"predicted step with {open(sys.argv[3]).read()}: rebalanced partition {got:.1f} ms, fresh plan {best:.1f} ms")
assert got <= 1.1 * best, (got, best)
PY
# A branch plan (branchy's branches on cpu:0 and cpu:1) rebalances the same way in one process: it switches to
# new node lists predicted faster for the slowed cpu:0, still a branch plan, and the losses stay those of the
# undisturbed run.
bplan=(plan "$ZOO/branchy.pt" --input 8x3x32x32 --devices cpu:0,cpu:1 --strategy branch --train --cost roofline)
"$PARTITA" "${bplan[@]}" --json "$WORK/branch.json" >/dev/null || fail "branch plan"
brun=(run "$ZOO/branchy.pt" --input 8x3x32x32 --train --steps 28 --plan "$WORK/branch.json")
"$PARTITA" "${brun[@]}" --json "$WORK/branch.calm.json" >/dev/null || fail "undisturbed branch run"
"$PARTITA" "${brun[@]}" --inject-slowdown 0:3:10 --rebalance --rebalance-threshold 2 --json "$WORK/branch.rebal.json" \
  >"$WORK/branch.rebal.out" 2>"$WORK/branch.rebal.err" || fail "rebalanced branch run: $(tail -3 "$WORK/branch.rebal.err")"
branch_rebalanced "$WORK/branch.rebal.json" || fail "branch rebalance checks"
losses_equal "$WORK/branch.calm.json" "$WORK/branch.rebal.json" || fail "rebalanced branch run: losses"

# Checkpoints of a rebalanced run record the plan running when they were saved, and --resume goes on with it.
# Killed before step 23 (rebalanced after step 13 or so; checkpoints every 5: LATEST is step 20's, on the new
# layout), then resumed from the original plan file: the 28 losses are those of an undisturbed run (checkpointed
# runs have no warm-up steps, so the reference has none either).
ck=(--inject-slowdown 0:3:10 --rebalance --rebalance-threshold 2 --checkpoint-dir "$WORK/ck" --checkpoint-every 5)
"$PARTITA" "${run[@]}" --plan "$WORK/plan.json" --warmup 0 --json "$WORK/calm0.json" >/dev/null \
  || fail "undisturbed run without warm-up"
rc=0
PARTITA_FAULT_EXIT_AT_STEP=22 "$PARTITA" "${run[@]}" --plan "$WORK/plan.json" "${ck[@]}" >/dev/null 2>"$WORK/ck.err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "test hook: exits at step 22" "$WORK/ck.err" \
  || fail "rebalance + checkpoint: the kill hook did not fire: $(tail -2 "$WORK/ck.err")"
[ "$(cat "$WORK/ck/LATEST")" = step-00000020 ] || fail "rebalance + checkpoint: want the checkpoint of step 20"
cp "$WORK/ck/step-00000020/plan.json" "$WORK/saved.plan.json"  # the resumed run's last save replaces it
"$PARTITA" -v "${run[@]}" --plan "$WORK/plan.json" "${ck[@]}" --resume --json "$WORK/resumed.json" >/dev/null \
  2>"$WORK/resumed.err" || fail "rebalance + checkpoint: resume: $(tail -3 "$WORK/resumed.err")"
grep -q "resuming on the rebalanced layout the checkpoint was running" "$WORK/resumed.err" \
  || fail "rebalance + checkpoint: the resumed run should say it goes on with the rebalanced layout"
resumed_on_saved_layout "$WORK/plan.json" "$WORK/saved.plan.json" "$WORK/calm0.json" "$WORK/resumed.json" \
  || fail "rebalance + checkpoint: resumed run"
"$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); d['optimizer']='sgd'; json.dump(d, open(sys.argv[2],'w'))" \
  "$WORK/plan.json" "$WORK/sgd.plan.json"
expect_error "was written for another job (\"optimizer\": \"adam\", the plan has \"sgd\")" \
  "$PARTITA" "${run[@]}" --plan "$WORK/sgd.plan.json" --rebalance --checkpoint-dir "$WORK/ck" --resume
expect_error "--inject-slowdown '5:2:10': the plan has 2 stage(s)" \
  "$PARTITA" "${run[@]}" --plan "$WORK/plan.json" --inject-slowdown 5:2:10
expect_error "must be STAGE:FACTOR:STEP" "$PARTITA" "${run[@]}" --plan "$WORK/plan.json" --inject-slowdown 2x
expect_error "device slowdown 'cpu0' must be DEVICE:FACTOR" "$PARTITA" "${plan[@]}" --device-slowdown cpu0
expect_error "cannot slow down device 'cpu:7'" "$PARTITA" "${plan[@]}" --device-slowdown cpu:7:2
finish

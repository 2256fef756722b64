# Shared helpers for the command-line tests. Each test is a bash script run by ctest with PARTITA (the binary),
# ZOO (the generated model zoo), PYTHON (Debian's python3 with torch) and SRC (the source tree) set.
set -euo pipefail
: "${PARTITA:?}" "${ZOO:?}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# expect_error "substring" cmd...: the command must exit non-zero with exactly one stderr line containing substring.
expect_error() {
  local want=$1; shift
  local rc=0
  "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  local lines; lines=$(wc -l <"$WORK/err")
  if [ "$rc" -eq 0 ]; then fail "expected failure: $*"; return; fi
  if [ "$rc" -ge 128 ]; then fail "crashed (rc=$rc): $*"; return; fi
  if [ "$lines" -ne 1 ]; then fail "expected one stderr line, got $lines: $* :: $(head -c 600 "$WORK/err")"; return; fi
  grep -qF -- "$want" "$WORK/err" || fail "stderr lacks '$want': $(cat "$WORK/err")"
}
# "${SIGINT_DEFAULT[@]}" CMD... / "${SIGINT_IGNORED[@]}" CMD...: CMD with SIGINT at its default action, as an
# interactive shell's foreground job starts, or ignored, as a script's background job starts. Python sets it
# and execs CMD, so started with & the job's $! is CMD's pid.
sigint_set='import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL if sys.argv[1] == "default" else signal.SIG_IGN)
os.execvp(sys.argv[2], sys.argv[2:])'
SIGINT_DEFAULT=("${PYTHON:-python3}" -c "$sigint_set" default)
SIGINT_IGNORED=("${PYTHON:-python3}" -c "$sigint_set" ignore)
json_get() { "$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {'d': d}))" "$@"; }
finish() {
  if [ "$failures" -ne 0 ]; then echo "$failures failure(s)" >&2; exit 1; fi
  echo "ok"
}
# expect_rank_faults EXIT_RE HANG_RE RUN_ARGS...: `partita launch -n 2 -- partita RUN_ARGS...` with rank 1 dying
# (PARTITA_FAULT_EXIT_AT_STEP=5), then stalling (PARTITA_FAULT_HANG_AT_STEP=5): each time the job must fail
# within 30 s, rank 0's error line must match EXIT_RE / HANG_RE (grep, after "[rank 0] partita: error: rank 0: ")
# and the launcher must name the ranks.
expect_rank_faults() {
  local exit_re=$1 hang_re=$2; shift 2
  local start rc took
  start=$SECONDS; rc=0
  PARTITA_FAULT_EXIT_AT_STEP=5 "$PARTITA" launch -n 2 -- partita "$@" >/dev/null 2>"$WORK/exit.err" || rc=$?
  took=$((SECONDS - start))
  [ "$rc" -ne 0 ] || fail "exit fault: launch should fail"
  [ "$took" -le 30 ] || fail "exit fault: took $took s"
  # The launcher polls every 50 ms: when rank 0 stops within the same poll as the rank that died, either may be
  # reaped first. What matters is that both are named and that rank 0 names rank 1.
  grep -qE "partita: error: rank (1 exited with status 1 first|0 exited with status 1 first; then rank 1 exited with status 1)" \
    "$WORK/exit.err" || fail "exit fault: launcher line: $(cat "$WORK/exit.err")"
  grep -q "^\[rank 0\] partita: error: rank 0: $exit_re" "$WORK/exit.err" \
    || fail "exit fault: rank 0 should name rank 1: $(cat "$WORK/exit.err")"
  echo "exit fault stopped in $took s"

  start=$SECONDS; rc=0
  PARTITA_FAULT_HANG_AT_STEP=5 PARTITA_DISTRIBUTED_TIMEOUT_S=5 "$PARTITA" launch -n 2 --grace 2 -- partita "$@" \
    >/dev/null 2>"$WORK/hang.err" || rc=$?
  took=$((SECONDS - start))
  [ "$rc" -ne 0 ] || fail "hang fault: launch should fail"
  [ "$took" -le 30 ] || fail "hang fault: took $took s"
  grep -q "^\[rank 0\] partita: error: rank 0: $hang_re" "$WORK/hang.err" \
    || fail "hang fault: rank 0 should name rank 1: $(cat "$WORK/hang.err")"
  grep -q "partita: error: rank 0 exited with status 1 first; then rank 1 was killed" "$WORK/hang.err" \
    || fail "hang fault: launcher line: $(cat "$WORK/hang.err")"
  echo "hang fault stopped in $took s"
}
# same_losses A.json B.json (distributed.sh, distributed_pipeline.sh): 20 losses each, relative difference <= 1e-4,
# and falling.
same_losses() {
  "$PYTHON" - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p))["losses"] for p in sys.argv[1:3])
assert len(a) == len(b) == 20, (len(a), len(b))
diffs = [abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b)]
worst = max(diffs)
assert worst <= 1e-4, f"relative difference {worst:.2g} at step {diffs.index(worst)}; per step: " + \
    " ".join(f"{d:.1g}" for d in diffs)
assert a[-1] < a[0], "loss should fall"
print(f"  losses of {sys.argv[1].rsplit('/', 1)[-1]} and {sys.argv[2].rsplit('/', 1)[-1]} within {worst:.1g}")
PY
}
# Kills `partita launch -n 2 -- partita run ARGS --checkpoint-dir DIR --checkpoint-every 5` at step 7 (after
# the checkpoint of step 5), resumes it, and checks that its 20 losses are those of REFERENCE (the --json of
# the same run uninterrupted, without warm-up steps) bit for bit.
#   expect_exact_resume WHAT REFERENCE DIR ARGS...
expect_exact_resume() {
  local what=$1 reference=$2 dir=$3; shift 3
  local rc=0
  PARTITA_FAULT_EXIT_AT_STEP=7 "$PARTITA" launch -n 2 -- partita run "$@" --checkpoint-dir "$dir" \
    --checkpoint-every 5 >/dev/null 2>"$dir.err" || rc=$?
  if [ "$rc" -eq 0 ] || [ "$(cat "$dir/LATEST" 2>/dev/null)" != step-00000005 ]; then
    fail "$what: want a kill at step 7 after the checkpoint of step 5: $(tail -2 "$dir.err")"
    return
  fi
  "$PARTITA" launch -n 2 -- partita run "$@" --checkpoint-dir "$dir" --checkpoint-every 5 --resume \
    --json "$dir.resumed.json" >/dev/null 2>"$dir.err" || { fail "$what: resume: $(tail -3 "$dir.err")"; return; }
  [ "$(json_get "$dir.resumed.json" "d['resumed_from_step']")" = 5 ] || fail "$what: should resume from step 5"
  "$PYTHON" -c "import json,sys; a,b=(json.load(open(p))['losses'] for p in sys.argv[1:]); assert len(a) == 20 and a == b, (a, b)" \
    "$reference" "$dir.resumed.json" || fail "$what: killed and resumed losses differ"
}
free_port() { "$PYTHON" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
TORCHRUN=$(command -v torchrun || true)  # the distributed tests also launch with torchrun where it is installed
# losses_equal CALM RUN: both runs' JSON hold 28 losses, equal within a relative 1e-4 (a rebalanced run computes
# the same math as an undisturbed one, up to the order of sums).
losses_equal() {
  "$PYTHON" - "$@" <<'PY'
import json, sys
a, b = (json.load(open(p))['losses'] for p in sys.argv[1:3])
assert len(a) == len(b) == 28, (len(a), len(b))
worst = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b))
assert worst <= 1e-4, ('losses changed', worst)
print(f"losses equal to the undisturbed run's (worst relative difference {worst:.1e})")
PY
}
# branch_rebalanced REBAL [WEIGHTS]: a branch plan's run slowed on cpu:0 from step 10 (rebalance.sh,
# distributed_rebalance.sh) rebalanced between steps 10 and 19 to node lists predicted at least 20% faster (the
# event names them by node count: "cpu:0 23 nodes; cpu:1 24 nodes"; nodes differ in cost, so cpu:0's count may
# even grow), and still runs a branch plan. WEIGHTS (processes): the ranks' model tensors are the model's weights
# exactly once between them.
branch_rebalanced() {
  "$PYTHON" - "$1" "${2:-0}" <<'PY'
import json, re, sys
rebal, weights = json.load(open(sys.argv[1])), int(sys.argv[2])
applied = [e for e in rebal['rebalances'] if e['applied']]
assert applied, ('no rebalance applied', rebal['rebalances'])
first = applied[0]
print("event:", first)
assert 10 <= first['step'] and first['step'] + 1 <= 20, ('rebalanced too early or too late', first)
assert first['predicted_new_ms'] < 0.8 * first['predicted_current_ms'], first
assert re.fullmatch(r"cpu:\d \d+ nodes; cpu:\d \d+ nodes", first['to']), first['to']
assert rebal['final_plan']['strategy'] == 'branch', rebal['final_plan']['strategy']
if weights:
    held = rebal['model_bytes_per_rank']
    assert all(0 < m < weights for m in held) and sum(held) == weights, (held, weights)
PY
}
# resumed_on_saved_layout PLAN SAVED CALM RESUMED: a rebalanced run killed and resumed (rebalance.sh,
# distributed_rebalance.sh). SAVED, the plan of the checkpoint it resumed from (step 20), must hold another layout
# than PLAN (devices, batch shares, cuts or a branch plan's node lists) planned for a slowed cpu:0; RESUMED must go on from step 20 on that
# layout (unless it rebalanced again) with the 28 losses of CALM, an undisturbed run without warm-up steps.
resumed_on_saved_layout() {
  "$PYTHON" - "$@" <<'PY'
import json, sys
plan, saved, calm, resumed = (json.load(open(p)) for p in sys.argv[1:5])
def layout(p):
    return [(p['groups'][s['group']]['devices'], p['groups'][s['group']]['batch_shares'], s['first'], s['last'],
             s.get('nodes', [])) for s in p['stages']]
assert layout(saved) != layout(plan), ('the checkpoint should hold the rebalanced plan', layout(saved))
assert 'cpu:0' in saved['source'].get('device_slowdowns', {}), saved['source']
assert resumed['resumed_from_step'] == 20, resumed.get('resumed_from_step')
if not any(e['applied'] for e in resumed.get('rebalances', [])):
    assert layout(resumed['final_plan']) == layout(saved), (layout(resumed['final_plan']), layout(saved))
print(f"resumed on {layout(saved)}")
PY
  losses_equal "$3" "$4"
}
# flops_ratio NAME INPUT OPS LOW HIGH: analyzes $WORK/NAME_a.pt (a model using one of OPS, comma-separated) and
# $WORK/NAME_b.pt (the same math without them, e.g. unrolled or unfused) at INPUT; partita's FLOP totals must
# give LOW <= a/b <= HIGH, and model a's analysis must list no op without an estimate.
flops_ratio() {
  local name=$1 input=$2 ops=$3 low=$4 high=$5 kind
  for kind in a b; do
    "$PARTITA" --threads 1 analyze "$WORK/${name}_$kind.pt" --input "$input" --json "$WORK/${name}_$kind.json" \
      >"$WORK/${name}_$kind.txt" || { fail "analyze ${name}_$kind"; return; }
  done
  "$PYTHON" - "$WORK/${name}_a.json" "$WORK/${name}_b.json" "$ops" "$low" "$high" "$name" <<'PY' || fail "$name: FLOPs of a vs b"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
ops, low, high = set(sys.argv[3].split(",")), float(sys.argv[4]), float(sys.argv[5])
assert {n["op"] for n in a["nodes"]} & ops, f"{sys.argv[1]} uses none of {sorted(ops)}"
assert not {n["op"] for n in b["nodes"]} & ops, f"{sys.argv[2]} uses {sorted(ops)} too"
ratio = a["flops"] / b["flops"]
print(f"{sys.argv[6]}: {a['flops']:.0f} vs {b['flops']:.0f} FLOPs, ratio {ratio:.4f}")
assert low <= ratio <= high, ratio
PY
  if grep -q "no estimate" "$WORK/${name}_a.txt"; then fail "$name: $(grep "no estimate" "$WORK/${name}_a.txt")"; fi
}

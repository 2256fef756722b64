# scripts/memory-timeline (a developer's tool: a run's allocations under gdb, the peak marked) still finds the
# counting line of the memory meter and lists a training step: the MLP's step on one device, one peak row, the
# autograd functions that allocated, and a peak no higher than what the run itself measured. (The tool broke
# silently once, when the counting line changed.)
source "$(dirname "$0")/lib.sh"
command -v gdb >/dev/null || { echo "FAIL: gdb is not installed (scripts/setup installs it)" >&2; exit 1; }
"$PARTITA" -q plan "$ZOO/mlp.pt" --input 32x64 --train --devices cpu:0 --strategy data --cost roofline \
  --json "$WORK/plan.json" >/dev/null || fail "plan mlp"
"$SRC/scripts/memory-timeline" 16 -- "$PARTITA" -q run "$ZOO/mlp.pt" --plan "$WORK/plan.json" --input 32x64 \
  --train --steps 1 --warmup 1 --json "$WORK/run.json" >"$WORK/timeline" 2>&1 || fail "memory-timeline exited non-zero"
[ "$(grep -c '<== peak$' "$WORK/timeline")" = 1 ] || fail "not one peak row: $(head -c 600 "$WORK/timeline")"
grep -q 'autograd::generated::AddmmBackward0' "$WORK/timeline" || fail "no autograd function named"
peak_kib=$(grep '<== peak$' "$WORK/timeline" | awk '{print $2}')
measured=$(json_get "$WORK/run.json" "d['measured_host_peak_bytes']")
"$PYTHON" -c "import sys; p, m = float(sys.argv[1]) * 1024, int(sys.argv[2]); sys.exit(0 if 0 < p <= m else 1)" \
  "${peak_kib:-0}" "$measured" || fail "peak row ${peak_kib:-none} KiB is not within the run's measured peak $measured B"
finish

#!/usr/bin/env bash
# Dynamic rebalancing, measured: a 2-stage GPT training pipeline on cpu:0 + cpu:1 with cpu:0 made 2x slower
# from step 10 (`--inject-slowdown 0:2:10`). Side by side, alternating, ROUNDS times:
#   slowed, no rebalancing       the original plan keeps running on the slowed device
#   slowed, --rebalance          partita notices the drift and plans again between steps
#   fresh plan for the slowdown  `plan --device-slowdown cpu:0:2`, slowed from step 0
# Step times are medians over steps 20..STEPS (after any rebalance); the figure that matters is the throughput
# of the rebalanced run relative to the fresh plan (target: >= 0.9). Writes the section "Dynamic rebalancing"
# of docs/benchmarks.md (or $OUT).
#
# LAYOUT=data-processes: the same with a 2-replica data-parallel plan run as one process per core
# (`partita launch -n 2`): rebalancing moves the batch shares. LAYOUT=pipeline-processes: the pipeline with one
# process per stage: rebalancing moves the cut (and may swap the stages' devices) and hands the moved layers'
# weights and optimizer state over.
# Each layout writes a section of its own ("Dynamic rebalancing", "... across processes", "... across
# processes (pipeline)").
#
#   bench/rebalance_bench.sh [BUILD_DIR]      ROUNDS=3 STEPS=40 LAYOUT=pipeline by default
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
partita=$build/apps/partita/partita
zoo=$build/models
out=${OUT:-docs/benchmarks.md}
rounds=${ROUNDS:-3}
steps=${STEPS:-40}
layout=${LAYOUT:-pipeline}
case $layout in
  pipeline) strategy=(--strategy pipeline --microbatches 4); launch=() ;;
  data-processes) strategy=(--strategy data --all-devices); launch=(launch -n 2 -- partita) ;;
  pipeline-processes) strategy=(--strategy pipeline --microbatches 4); launch=(launch -n 2 -- partita) ;;
  *) echo "rebalance_bench.sh: LAYOUT '$layout' is not pipeline, data-processes or pipeline-processes" >&2; exit 2 ;;
esac
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
model=(gpt.pt --input 8x128:i64:2048)
plan=(-q plan "$zoo/${model[0]}" "${model[@]:1}" --devices cpu:0,cpu:1 "${strategy[@]}" --train)
$partita "${plan[@]}" --json "$tmp/plan.json" >/dev/null
$partita "${plan[@]}" --device-slowdown cpu:0:2 --json "$tmp/fresh.json" >/dev/null
# The fresh plan may put cpu:0 on another stage: slow down whichever stage runs there.
fresh_stage=$($py -c "import json,sys; p=json.load(open(sys.argv[1])); print(next(i for i, s in enumerate(p['stages']) if p['groups'][s['group']]['devices'][0] == 'cpu:0'))" "$tmp/fresh.json")
run=(-q "${launch[@]}" run "$zoo/${model[0]}" "${model[@]:1}" --train --steps $((steps - 2)))
for r in $(seq 1 "$rounds"); do
  echo "rebalance bench: round $r/$rounds" >&2
  $partita "${run[@]}" --plan "$tmp/plan.json" --inject-slowdown 0:2:10 --json "$tmp/slow-$r.json" >/dev/null
  $partita "${run[@]}" --plan "$tmp/plan.json" --inject-slowdown 0:2:10 --rebalance --json "$tmp/rebal-$r.json" >/dev/null
  $partita "${run[@]}" --plan "$tmp/fresh.json" --inject-slowdown "$fresh_stage:2:0" --json "$tmp/fresh-$r.json" >/dev/null
done
$py - "$tmp" "$rounds" "$out" "$steps" "$layout" <<'PY'
import json, os, statistics, subprocess, sys, datetime
tmp, rounds, out, steps, layout = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
def after20(path):  # counted steps start after 2 warm-up steps: global step i is index i - 2
    d = json.load(open(path))
    return statistics.median(d['step_ms_all'][18:]), d
rows = {k: [] for k in ('slow', 'rebal', 'fresh')}
events = []
for r in range(1, rounds + 1):
    for k in rows:
        ms, d = after20(os.path.join(tmp, f"{k}-{r}.json"))
        rows[k].append(ms)
        if k == 'rebal':
            events.append(d.get('rebalances', []))
def nodes(p):
    if layout == 'data-processes':
        g = p['groups'][p['stages'][0]['group']]
        return ' + '.join(f"{d} {n}" for d, n in zip(g['devices'], g['batch_shares'])) + ' samples'
    return '; '.join(f"{p['groups'][s['group']]['devices'][0]} nodes {s['first']}-{s['last']}" for s in p['stages'])
plan, fresh = (json.load(open(os.path.join(tmp, f))) for f in ('plan.json', 'fresh.json'))
med = {k: statistics.median(v) for k, v in rows.items()}
ratio = med['fresh'] / med['rebal']
cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
title = "## Dynamic rebalancing" + {'pipeline': '', 'data-processes': ' across processes',
                                    'pipeline-processes': ' across processes (pipeline)'}[layout]
what = {'data-processes': "2-replica data-parallel plan on cpu:0 + cpu:1, one process per core (`partita launch -n 2`)",
        'pipeline': "2-stage pipeline (4 microbatches) on cpu:0 + cpu:1",
        'pipeline-processes': "2-stage pipeline (4 microbatches) on cpu:0 + cpu:1, one process per stage "
                              "(`partita launch -n 2`)"}[layout]
lines = [title, "",
         f"Produced by `{'' if layout == 'pipeline' else f'LAYOUT={layout} '}bench/rebalance_bench.sh` "
         f"on {datetime.date.today()} ({cpu}, {os.cpu_count()} cores), "
         f"{rounds} alternating rounds, {steps} steps each. GPT decoder (zoo `gpt.pt`, batch 8x128), training, {what}; "
         "cpu:0 made 2x slower from step 10 by `--inject-slowdown 0:2:10` "
         "(each of its tasks is stretched by sleeping; the fresh plan's run is slowed on cpu:0 from step 0). Step time = median over steps 20.."
         f"{steps - 1} of a run, then the median over rounds (all rounds listed).", "",
         "| run | layout | step ms (median) | all rounds |", "|---|---|---|---|",
         f"| slowed, no rebalancing | {nodes(plan)} | {med['slow']:.1f} | {', '.join(f'{x:.1f}' for x in rows['slow'])} |"]
finals = [e for ev in events for e in ev if e['applied']]
lines.append(f"| slowed, `--rebalance` | {finals[-1]['to'] if finals else 'no rebalance'} | {med['rebal']:.1f} | "
             f"{', '.join(f'{x:.1f}' for x in rows['rebal'])} |")
lines.append(f"| fresh plan for the slowed hardware | {nodes(fresh)} | {med['fresh']:.1f} | "
             f"{', '.join(f'{x:.1f}' for x in rows['fresh'])} |")
switched = ', '.join(f"{e['predicted_current_ms']:.1f} -> {e['predicted_new_ms']:.1f}" for e in finals) or 'none'
lines += ["", f"Rebalanced throughput / fresh plan's: **{ratio:.2f}** (target >= 0.90). Rebalances per round "
          f"(step after which the new plan was applied): {[[e['step'] for e in ev if e['applied']] for ev in events]}; "
          "predicted step ms of the running plan under the measured slowdown -> the plan it switched to: "
          f"{switched} "
          f"(the fresh plan: {fresh['predicted_step_ms']:.1f}).", ""]
subprocess.run([sys.executable, "bench/md_section.py", out, title], input="\n".join(lines),
               text=True, check=True)
print("\n".join(lines))
PY

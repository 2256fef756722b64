# partita plan / simulate: plan JSON fields, simulate agrees with plan, model specs on a described cluster,
# determinism, and one-line errors for memory that is too small and devices this machine lacks.
source "$(dirname "$0")/lib.sh"
: "${SRC:?}" "${PYTHON:?}"

# The zoo MLP on the two one-core groups of this machine. Roofline costs here, so that plan, simulate and a
# second plan agree exactly (measured costs may be re-measured between runs on a noisy machine).
"$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0,cpu:1 --cost roofline --json "$WORK/mlp.json" \
  >"$WORK/plan.txt" || fail "plan mlp"
grep -q "^plan: " "$WORK/plan.txt" || fail "plan text lacks the plan line"
grep -q "why it won" "$WORK/plan.txt" || fail "plan text lacks the alternatives"
grep -q "pareto front" "$WORK/plan.txt" || fail "plan text lacks the Pareto front"
for key in predicted_step_ms predicted_peak_bytes predicted_joules source stages groups; do
  [ "$(json_get "$WORK/mlp.json" "'$key' in d")" = "True" ] || fail "plan JSON lacks $key"
done
[ "$(json_get "$WORK/mlp.json" "d['predicted_step_ms'] > 0")" = "True" ] || fail "predicted_step_ms not positive"
[ "$(json_get "$WORK/mlp.json" "sorted(d['predicted_peak_bytes']) == sorted(set(sum((g['devices'] for g in d['groups']), [])))")" = "True" ] \
  || fail "predicted_peak_bytes does not name the plan's devices"

# simulate rebuilds the inputs from the plan's source section and predicts the same step.
"$PARTITA" simulate "$WORK/mlp.json" --json "$WORK/sim.json" --trace "$WORK/trace.json" >"$WORK/sim.txt" \
  || fail "simulate mlp"
[ "$(json_get "$WORK/mlp.json" "d['predicted_step_ms']")" = "$(json_get "$WORK/sim.json" "d['predicted_step_ms']")" ] \
  || fail "simulate predicts a different step time than plan"
[ "$(json_get "$WORK/trace.json" "len([e for e in d['traceEvents'] if e['ph'] == 'X']) > 0")" = "True" ] \
  || fail "trace has no events"

# Determinism: two runs give byte-identical plan JSON.
"$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0,cpu:1 --cost roofline --json "$WORK/mlp2.json" >/dev/null \
  || fail "plan again"
cmp -s "$WORK/mlp.json" "$WORK/mlp2.json" || fail "two plan runs differ"

# By default a TorchScript model on local devices is planned with per-op times measured here.
"$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0,cpu:1 --train --json "$WORK/mlp_prof.json" >/dev/null \
  || fail "plan mlp (profiled)"
[ "$(json_get "$WORK/mlp_prof.json" "d['source']['cost']")" = "profiled" ] || fail "default cost is not profiled"
[ "$(json_get "$WORK/mlp.json" "d['source']['cost']")" = "roofline" ] || fail "--cost roofline not recorded"
"$PARTITA" simulate "$WORK/mlp_prof.json" --json "$WORK/sim_prof.json" >/dev/null || fail "simulate a profiled plan"
# A plan for this machine runs: where the best-predicted layout is one the engine cannot run yet, plan takes
# the best runnable one and says so; asked for by name, it stays, with a note.
"$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0,cpu:1 --train --cost roofline --json "$WORK/runnable.json" \
  >"$WORK/runnable.txt" || fail "plan mlp (runnable)"
"$PARTITA" run "$ZOO/mlp.pt" --input 32x64 --plan "$WORK/runnable.json" --train --steps 2 --warmup 0 >/dev/null \
  || fail "run the plan that plan chose"
# A plan whose devices were edited by hand keeps the prediction it was written with: run says so and leaves the
# predicted figures out rather than printing another layout's (or zero) as this one's.
"$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0 --cost roofline --json "$WORK/one.json" >/dev/null \
  || fail "plan mlp on cpu:0"
"$PYTHON" - "$WORK/one.json" "$WORK/moved.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
for g in plan["groups"]:
    g["devices"] = ["cpu:1" if d == "cpu:0" else d for d in g["devices"]]
json.dump(plan, open(sys.argv[2], "w"))
PY
"$PARTITA" run "$ZOO/mlp.pt" --input 32x64 --plan "$WORK/moved.json" --steps 2 --warmup 0 --json "$WORK/moved-run.json" \
  >"$WORK/moved.out" 2>"$WORK/moved.err" || fail "run a plan moved to cpu:1: $(cat "$WORK/moved.err")"
grep -q "no prediction: its prediction is for cpu:0 but it runs on cpu:1" "$WORK/moved.out" \
  || fail "run did not say why the moved plan has no prediction: $(cat "$WORK/moved.out")"
grep -q "predicted - ms" "$WORK/moved.out" || fail "run printed a prediction for the moved plan: $(head -2 "$WORK/moved.out")"
grep -q "(predicted        -)" "$WORK/moved.out" || fail "run printed a stage prediction for the moved plan"
[ "$(json_get "$WORK/moved-run.json" "d['predicted_ms']")" = "None" ] || fail "run --json predicted_ms of the moved plan"
"$PARTITA" run "$ZOO/mlp.pt" --input 32x64 --plan "$WORK/one.json" --steps 2 --warmup 0 >"$WORK/one.out" \
  2>"$WORK/one.err" || fail "run the plan on cpu:0"
grep -q "no prediction" "$WORK/one.out" && fail "run found no prediction in a plan run where it was made"
grep -qE "predicted [0-9]+\.[0-9]+ ms" "$WORK/one.out" || fail "run lost the prediction of a plan run where it was made"
"$PARTITA" plan "$ZOO/baked_batch.pt" --input 8x16 --devices cpu:0,cpu:1 --cost roofline --strategy tensor \
  >"$WORK/tensor_refused.txt" || fail "plan --strategy tensor (a graph the engine cannot split)"
grep -q "note: partita run cannot run this plan yet: tensor parallelism cannot split node 1 aten::view" \
  "$WORK/tensor_refused.txt" || fail "no note on an unrunnable plan asked for: $(cat "$WORK/tensor_refused.txt")"
# Tensor parallelism runs (one group over the whole model, engine_tensor.h): the MLP's losses equal those of
# one device, and every device's forward and backward is on the trace.
"$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0,cpu:1 --train --cost roofline --strategy tensor \
  --optimizer sgd_momentum --json "$WORK/tensor.json" >"$WORK/tensor_local.txt" || fail "plan --strategy tensor"
! grep -q "cannot run" "$WORK/tensor_local.txt" || fail "a runnable tensor plan has a note: $(cat "$WORK/tensor_local.txt")"
"$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0 --train --cost roofline --optimizer sgd_momentum \
  --json "$WORK/one.json" >/dev/null || fail "plan mlp on one device"
"$PARTITA" run "$ZOO/mlp.pt" --input 32x64 --plan "$WORK/tensor.json" --train --steps 5 --warmup 0 \
  --json "$WORK/tensor.run.json" --trace "$WORK/tensor.trace.json" >/dev/null || fail "run the tensor plan"
"$PARTITA" run "$ZOO/mlp.pt" --input 32x64 --plan "$WORK/one.json" --train --steps 5 --warmup 0 \
  --json "$WORK/one.run.json" >/dev/null || fail "run the one-device plan"
"$PYTHON" - "$WORK" <<'PY' || fail "tensor-parallel run"
import json, sys
w = sys.argv[1]
plan = json.load(open(f"{w}/tensor.json"))
assert plan["strategy"] == "tensor" and plan["groups"][0]["devices"] == ["cpu:0", "cpu:1"], plan["groups"]
tp = json.load(open(f"{w}/tensor.run.json"))["losses"]
one = json.load(open(f"{w}/one.run.json"))["losses"]
assert len(tp) == len(one) == 5 and tp[-1] < tp[0], (tp, one)
worst = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(tp, one))
assert worst <= 1e-4, (worst, tp, one)
print(f"tensor-parallel losses within {worst:.1e} of one device's")
trace = json.load(open(f"{w}/tensor.trace.json"))
events = trace["traceEvents"] if isinstance(trace, dict) else trace
rows = {e["tid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}
tasks = {(rows.get(e["tid"], ""), e["name"][0]) for e in events if e.get("ph") == "X" and e.get("pid") == 1}
for device in ("cpu:0", "cpu:1"):
    for kind in "FB":
        assert any(device in row and k == kind for row, k in tasks), (device, kind, sorted(tasks))
PY

# Profiled planning also measures every node on one sample and fits each node's per-call part.
"$PARTITA" --verbose plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0,cpu:1 --train >/dev/null 2>"$WORK/mlp_prof.log" \
  || fail "plan mlp (profiled, verbose)"
grep -q "per-call parts on cpu:0 (fit over 32 samples and 1" "$WORK/mlp_prof.log" \
  || fail "no one-sample fit of per-call parts: $(grep 'cost table' "$WORK/mlp_prof.log")"
# ... and the co-run slowdown of cpu:0's row beside cpu:1 (cost/corun.h): contention and stragglers, both
# medians that are at least 1 by construction.
line=$(grep -o "beside 1 other CPU device(s): contention x[0-9.]* (rounds [0-9. ]*), stragglers x[0-9.]*" \
  "$WORK/mlp_prof.log") \
  || fail "no co-run slowdown: $(grep 'cost table' "$WORK/mlp_prof.log")"
"$PYTHON" - "$line" <<'PY' || fail "co-run slowdown below 1: $line"
import re, sys
contention, stragglers = map(float, re.findall(r"x([0-9.]+)", sys.argv[1]))
assert contention >= 1.0 and stragglers >= 1.0, (contention, stragglers)
PY

# A model with its traced batch baked into a reshape computes something else on part of its batch: its plans
# keep the batch whole, splitting is refused by name, and run refuses a plan that splits it.
"$PARTITA" plan "$ZOO/baked_batch.pt" --input 8x16 --devices cpu:0,cpu:1 --train --strategy data \
  --json "$WORK/baked.json" >"$WORK/baked.txt" || fail "plan baked_batch"
grep -q "every plan keeps the batch whole (no microbatches, no data parallelism): .*node 1 (aten::view)" "$WORK/baked.txt" || fail "no note: $(cat "$WORK/baked.txt")"
[ "$(json_get "$WORK/baked.json" "d['microbatches'] == 1 and [len(g['devices']) for g in d['groups']] == [1]")" = "True" ] \
  || fail "baked_batch plan splits the batch: $(cat "$WORK/baked.txt")"
expect_error "--microbatches 2: " "$PARTITA" plan "$ZOO/baked_batch.pt" --input 8x16 --devices cpu:0,cpu:1 --microbatches 2
"$PYTHON" - "$WORK/baked.json" "$WORK/baked_split.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
plan["groups"][0]["devices"] = ["cpu:0", "cpu:1"]
plan["groups"][0]["batch_shares"] = [4, 4]
json.dump(plan, open(sys.argv[2], "w"))
PY
expect_error "computes something else on part of it: node 1 (aten::view)" \
  "$PARTITA" run "$ZOO/baked_batch.pt" --input 8x16 --plan "$WORK/baked_split.json" --train --steps 2
# The batch leaving dim 0 is not enough to refuse: an LSTM classifier reads its final state (batch in dim 1),
# and two halves of a batch give the whole batch's outputs, so data parallelism is planned; a model that
# transposes its batch into its features mixes samples (the halves differ) and keeps its batch whole.
"$PARTITA" plan "$ZOO/lstm_state.pt" --input 8x6x8 --devices cpu:0,cpu:1 --train --strategy data --all-devices \
  --json "$WORK/lstm_state.json" >"$WORK/lstm_state.txt" || fail "plan lstm_state"
[ "$(json_get "$WORK/lstm_state.json" "[len(g['devices']) for g in d['groups']]")" = "[2]" ] \
  || fail "lstm_state: want data parallelism on both cores: $(cat "$WORK/lstm_state.txt")"
"$PARTITA" plan "$ZOO/scrambled_batch.pt" --input 8x16 --devices cpu:0,cpu:1 --strategy data >"$WORK/scrambled.txt" \
  || fail "plan scrambled_batch"
grep -q "every plan keeps the batch whole .*node 0 (aten::t) .*differs from the whole batch's .*only plans that keep the batch whole compute the same" \
  "$WORK/scrambled.txt" || fail "scrambled_batch: $(tail -1 "$WORK/scrambled.txt")"
# A batch mean is no proof by its shape alone: one that reaches the output through x - x.mean(0) mixes samples,
# and a model returning its own loss (0-d) cannot be joined; both keep their batch whole (a data-parallel plan
# of own_loss failed with "zero-dimensional tensor cannot be concatenated").
"$PARTITA" plan "$ZOO/batch_centered.pt" --input 8x16 --devices cpu:0,cpu:1 --strategy data >"$WORK/centered.txt" \
  || fail "plan batch_centered"
grep -q "every plan keeps the batch whole .*reduces over the batch.*differs from the whole batch's .*only plans that keep the batch whole compute the same" \
  "$WORK/centered.txt" || fail "batch_centered: $(tail -1 "$WORK/centered.txt")"
"$PARTITA" plan "$ZOO/own_loss.pt" --input 8x16 --devices cpu:0,cpu:1 --strategy data --json "$WORK/own_loss.json" \
  >"$WORK/own_loss.txt" || fail "plan own_loss"
grep -q "every plan keeps the batch whole .*output 0 does not carry the batch in dim 0" "$WORK/own_loss.txt" \
  || fail "own_loss: $(tail -1 "$WORK/own_loss.txt")"
"$PARTITA" run "$ZOO/own_loss.pt" --input 8x16 --plan "$WORK/own_loss.json" --steps 2 >/dev/null \
  || fail "run own_loss's plan"
# A sequence-first output computes each sample on its own but cannot be joined along dim 0: the remedy says so.
"$PARTITA" plan "$ZOO/sequence_first.pt" --input 4x6x8 --devices cpu:0,cpu:1 --strategy data >"$WORK/seqfirst.txt" \
  || fail "plan sequence_first"
grep -q "every plan keeps the batch whole .*output 0 does not carry the batch in dim 0 .*return every output with the batch in dim 0" \
  "$WORK/seqfirst.txt" || fail "sequence_first: $(tail -1 "$WORK/seqfirst.txt")"
# x.flip(0): every node keeps the batch's shape, yet a split reorders the samples; only the halves show it.
"$PARTITA" plan "$ZOO/batch_flipped.pt" --input 8x16 --devices cpu:0,cpu:1 --strategy data >"$WORK/flipped.txt" \
  || fail "plan batch_flipped"
grep -q "every plan keeps the batch whole .*output 0 of two halves of a batch of 8 differs from the whole batch's" \
  "$WORK/flipped.txt" || fail "batch_flipped: $(tail -1 "$WORK/flipped.txt")"
# BatchNorm1d traced in train mode outputs its bias alone on one sample: 4 microbatches of a batch of 4 are
# never planned, and run refuses a hand-made plan with them.
"$PARTITA" plan "$ZOO/batch_norm_mlp.pt" --input 4x16 --devices cpu:0,cpu:1 --train --strategy pipeline \
  --cost roofline --json "$WORK/bn_mlp.json" >/dev/null || fail "plan batch_norm_mlp"
[ "$(json_get "$WORK/bn_mlp.json" "min(min(g['batch_shares']) for g in d['groups']) >= 2")" = "True" ] \
  || fail "batch_norm_mlp: a one-sample share was planned: $(cat "$WORK/bn_mlp.json")"
expect_error "4 microbatches of a batch of 4 hold 1 sample(s) each, but the model needs at least 2" "$PARTITA" plan "$ZOO/batch_norm_mlp.pt" --input 4x16 \
  --devices cpu:0,cpu:1 --train --strategy pipeline --cost roofline --microbatches 4
"$PYTHON" - "$WORK/bn_mlp.json" "$WORK/bn_mlp_1.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
plan["microbatches"] = 4
for g in plan["groups"]:
    g["batch_shares"] = [1] * len(g["devices"])
json.dump(plan, open(sys.argv[2], "w"))
PY
expect_error "the plan runs a microbatch share of 1 sample(s), but" \
  "$PARTITA" run "$ZOO/batch_norm_mlp.pt" --input 4x16 --plan "$WORK/bn_mlp_1.json" --train --steps 2

expect_error "unknown --cost" "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --cost magic
expect_error "use --cost roofline there" "$PARTITA" plan --model-spec "$SRC/config/models/gpt-24layer.yaml" \
  --cluster "$SRC/config/clusters/2xa100-2xv100-mixed.yaml" --cost profiled

# --optimizer: recorded in the plan, its state counted (weights + gradients + 0, 1 or 2 copies), and what
# `partita run` trains with (three different loss curves from one seed); simulate rebuilds the same prediction.
for o in sgd sgd_momentum adam; do
  "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0 --train --cost roofline --optimizer "$o" \
    --json "$WORK/opt.$o.json" >"$WORK/opt.$o.txt" || fail "plan --optimizer $o"
  grep -q "optimizer $o$" "$WORK/opt.$o.txt" || fail "plan --optimizer $o: the printed plan should name it"
  "$PARTITA" run "$ZOO/mlp.pt" --input 32x64 --plan "$WORK/opt.$o.json" --train --steps 3 \
    --json "$WORK/opt.$o.run.json" >/dev/null || fail "run the --optimizer $o plan"
done
"$PARTITA" simulate "$WORK/opt.sgd.json" --json "$WORK/opt.sgd.sim.json" >/dev/null || fail "simulate the sgd plan"
"$PYTHON" - "$WORK" <<'PY' || fail "--optimizer"
import json, sys
w = sys.argv[1]
plan = {o: json.load(open(f"{w}/opt.{o}.json")) for o in ("sgd", "sgd_momentum", "adam")}
assert [p["optimizer"] for p in plan.values()] == list(plan), [p["optimizer"] for p in plan.values()]
state = {o: p["prediction"]["devices"][0]["model_state_bytes"] for o, p in plan.items()}
assert abs(state["sgd_momentum"] / state["sgd"] - 1.5) < 1e-3 and abs(state["adam"] / state["sgd"] - 2) < 1e-3, state
losses = {o: json.load(open(f"{w}/opt.{o}.run.json"))["losses"] for o in plan}
assert len({tuple(l) for l in losses.values()}) == 3 and all(l[-1] < l[0] for l in losses.values()), losses
sim = json.load(open(f"{w}/opt.sgd.sim.json"))
assert sim["prediction"]["devices"][0]["model_state_bytes"] == state["sgd"], (sim["prediction"], state)
PY
expect_error "--optimizer sgd: an optimizer is for training" "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --optimizer sgd
expect_error "unknown optimizer 'lamb': use sgd, sgd_momentum, adam or adamw" \
  "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --train --optimizer lamb

# A model spec on a described mixed cluster, training; then simulate it and try the branch and tensor strategies.
"$PARTITA" plan --model-spec "$SRC/config/models/gpt-24layer.yaml" --cluster "$SRC/config/clusters/2xa100-2xv100-mixed.yaml" \
  --train --batch 16 --json "$WORK/gpt.json" --html "$WORK/gpt.html" >"$WORK/gpt.txt" \
  || fail "plan gpt-24layer on the mixed cluster"
[ "$(json_get "$WORK/gpt.json" "d['source']['cluster'].endswith('2xa100-2xv100-mixed.yaml')")" = "True" ] || fail "gpt source"
"$PARTITA" simulate "$WORK/gpt.json" --json "$WORK/gpt_sim.json" --html "$WORK/gpt_sim.html" >/dev/null \
  || fail "simulate gpt"
# The report pages: well-formed; the predicted step; a row per plan device with its busy time; a bar per stage
# and device; device and link timelines; plan's page lists the alternatives it printed.
for page in gpt.html gpt_sim.html; do
  "$PYTHON" - "$WORK/$page" "$WORK/gpt.json" "$WORK/gpt.txt" <<'PY' || fail "report $page"
import json, sys
from html.parser import HTMLParser
html, plan, text = open(sys.argv[1]).read(), json.load(open(sys.argv[2])), open(sys.argv[3]).read()
class Check(HTMLParser):
    void = {"meta", "br"}
    def __init__(self):
        super().__init__(); self.open = []; self.svgs = []; self.cells = []; self.data = ""
    def handle_starttag(self, tag, attrs):
        if tag in self.void: return
        self.open.append(tag)
        if tag == "svg": self.svgs.append([dict(attrs)["class"], 0])
        if tag == "rect": self.svgs[-1][1] += 1
        self.data = ""
    def handle_data(self, d): self.data += d
    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (tag, self.open[-3:])
        self.open.pop()
        if tag == "td": self.cells.append(self.data)
c = Check(); c.feed(html); c.close()
assert not c.open, c.open
assert "%.2f ms" % plan["predicted_step_ms"] in html, plan["predicted_step_ms"]
for d in plan["prediction"]["devices"]:
    i = c.cells.index(d["device"])
    assert c.cells[i + 1] == "%.2f ms" % (1000 * d["busy_s"]), (d, c.cells[i:i + 3])
bars = sum(len(plan["groups"][st["group"]]["devices"]) for st in plan["stages"])
assert [k for k, _ in c.svgs] == ["plan", "timeline", "timeline"], c.svgs
assert c.svgs[0][1] == bars, (c.svgs[0], bars)
assert c.svgs[1][1] > 0, c.svgs
alternatives = html.count("(pareto)") + 0
if sys.argv[1].endswith("gpt.html"):
    assert "<h2>Alternatives</h2>" in html
    assert text.count("[pareto]") == alternatives, (text.count("[pareto]"), alternatives)
else:
    assert "<h2>Alternatives</h2>" not in html
PY
done
[ "$(json_get "$WORK/gpt.json" "d['predicted_step_ms']")" = "$(json_get "$WORK/gpt_sim.json" "d['predicted_step_ms']")" ] \
  || fail "simulate gpt predicts a different step time"
# What-if power caps: both A100s capped at 250 W (of 400 W TDP, the database's 50 W idle): the plan records the
# caps, simulate rebuilds them, and every A100 the plan uses is predicted slower (busy longer) per sample than
# uncapped; partita run of such a plan says the cap is not applied unless asked.
"$PARTITA" --verbose plan --model-spec "$SRC/config/models/gpt-24layer.yaml" --cluster "$SRC/config/clusters/2xa100-2xv100-mixed.yaml" \
  --train --batch 16 --power-cap cuda:0:250 --power-cap cuda:1:250W --json "$WORK/capped.json" >"$WORK/capped.txt" \
  2>"$WORK/capped.err" || fail "plan with --power-cap: $(tail -2 "$WORK/capped.err")"
grep -q "planning cuda:0 capped at 250 W: clock x0.8" "$WORK/capped.err" || fail "the cap's model should be logged: $(cat "$WORK/capped.err")"
[ "$(json_get "$WORK/capped.json" "d['source']['power_caps_w']")" = "{'cuda:0': 250.0, 'cuda:1': 250.0}" ] \
  || fail "the plan should record its power caps"
"$PARTITA" simulate "$WORK/capped.json" --json "$WORK/capped_sim.json" >/dev/null || fail "simulate a capped plan"
[ "$(json_get "$WORK/capped.json" "d['predicted_step_ms']")" = "$(json_get "$WORK/capped_sim.json" "d['predicted_step_ms']")" ] \
  || fail "simulate should rebuild the caps"
"$PYTHON" - "$WORK/gpt.json" "$WORK/capped.json" <<'PY' || fail "capped plan vs uncapped"
import json, sys
free, capped = (json.load(open(p)) for p in sys.argv[1:])
assert capped["predicted_step_ms"] >= free["predicted_step_ms"] * 0.999, (capped["predicted_step_ms"], free["predicted_step_ms"])
PY
"$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); d['source']['power_caps_w']={'cuda:7': 250.0}; json.dump(d, open(sys.argv[2],'w'))" \
  "$WORK/mlp.json" "$WORK/mlp_capped.json"
"$PARTITA" run "$ZOO/mlp.pt" --input 32x64 --plan "$WORK/mlp_capped.json" --steps 1 --warmup 0 >/dev/null \
  2>"$WORK/run_capped.err" || fail "run a plan made for a capped GPU: $(tail -2 "$WORK/run_capped.err")"
grep -q "the plan was made for cuda:7 capped at 250 W; this run leaves its power limit as it is (add --power-cap cuda:7:250" \
  "$WORK/run_capped.err" || fail "run should say the plan's cap is not applied: $(cat "$WORK/run_capped.err")"
# --power-cap auto under the balanced objective: the caps chosen are recorded (whole watts, above idle, at most
# TDP), simulate rebuilds them, and the plan is no more than 5% slower and no less green than the uncapped
# balanced plan.
"$PARTITA" plan --model-spec "$SRC/config/models/gpt-24layer.yaml" --cluster "$SRC/config/clusters/2xa100-2xv100-mixed.yaml" \
  --train --batch 16 --objective balanced --json "$WORK/balanced.json" >/dev/null || fail "plan balanced"
"$PARTITA" plan --model-spec "$SRC/config/models/gpt-24layer.yaml" --cluster "$SRC/config/clusters/2xa100-2xv100-mixed.yaml" \
  --train --batch 16 --objective balanced --power-cap auto --json "$WORK/auto_caps.json" >"$WORK/auto_caps.txt" \
  || fail "plan --power-cap auto"
grep -q "power caps (cube-law model, not measured; 36 setting(s) planned): cuda:" "$WORK/auto_caps.txt" \
  || fail "auto caps not described: $(head -3 "$WORK/auto_caps.txt")"
"$PARTITA" simulate "$WORK/auto_caps.json" --json "$WORK/auto_caps_sim.json" >/dev/null || fail "simulate auto caps"
"$PYTHON" - "$WORK/balanced.json" "$WORK/auto_caps.json" "$WORK/auto_caps_sim.json" <<'PY' || fail "auto caps plan"
import json, sys
free, capped, sim = (json.load(open(p)) for p in sys.argv[1:])
caps = capped["source"]["power_caps_w"]
assert caps, "balanced should cap something on this cluster"
tdp = {"cuda:0": 400, "cuda:1": 400, "cuda:2": 300, "cuda:3": 300}
for device, watts in caps.items():
    assert watts == int(watts) and watts < tdp[device] and watts >= tdp[device] / 2, (device, watts)
assert sim["predicted_step_ms"] == capped["predicted_step_ms"], (sim["predicted_step_ms"], capped["predicted_step_ms"])
assert capped["predicted_step_ms"] <= free["predicted_step_ms"] * 1.05, (capped["predicted_step_ms"], free["predicted_step_ms"])
assert capped["predicted_joules"] < free["predicted_joules"], (capped["predicted_joules"], free["predicted_joules"])
PY
expect_error "--power-cap auto chooses caps for --objective energy or balanced" "$PARTITA" plan \
  --model-spec "$SRC/config/models/gpt-24layer.yaml" --cluster "$SRC/config/clusters/2xa100-2xv100-mixed.yaml" --power-cap auto
expect_error "has no GPU to cap" "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0,cpu:1 --cost roofline \
  --objective energy --power-cap auto
expect_error "power caps are modelled for GPUs only" "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0,cpu:1 \
  --cost roofline --power-cap cpu:0:5
expect_error "is not above its idle power" "$PARTITA" plan --model-spec "$SRC/config/models/gpt-24layer.yaml" \
  --cluster "$SRC/config/clusters/2xa100-2xv100-mixed.yaml" --batch 8 --power-cap cuda:0:20
expect_error "power cap 'cuda:1' must be DEVICE:WATTS, e.g. cuda:0:250" "$PARTITA" plan --model-spec "$SRC/config/models/gpt-24layer.yaml" \
  --cluster "$SRC/config/clusters/2xa100-2xv100-mixed.yaml" --batch 8 --power-cap cuda:1

for strategy in branch tensor; do
  "$PARTITA" plan --model-spec "$SRC/config/models/gpt-24layer.yaml" --cluster "$SRC/config/clusters/2xa100-2xv100-mixed.yaml" \
    --batch 8 --strategy $strategy --json "$WORK/$strategy.json" >/dev/null || fail "plan --strategy $strategy"
  [ "$(json_get "$WORK/$strategy.json" "d['strategy']")" = "$strategy" ] || fail "--strategy $strategy gave another strategy"
  "$PARTITA" simulate "$WORK/$strategy.json" --json "$WORK/${strategy}_sim.json" >/dev/null || fail "simulate $strategy"
  [ "$(json_get "$WORK/$strategy.json" "d['predicted_step_ms']")" = "$(json_get "$WORK/${strategy}_sim.json" "d['predicted_step_ms']")" ] \
    || fail "simulate $strategy predicts a different step time"
done

# Errors: one clear line each.
expect_error "smallest per-device memory for which a plan exists is" \
  "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0 --memory-limit 10KiB
expect_error "device cuda:7 is not here: this machine has cpu, cpu:0" \
  "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:0,cuda:7
expect_error "describe other hardware with --cluster FILE.yaml" \
  "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices cpu:999
expect_error "bad device id 'gpu0'" "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --devices gpu0
expect_error "--memory-limit 'lots' is not a memory size" \
  "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --memory-limit lots
expect_error "unknown strategy 'fastest'" "$PARTITA" plan "$ZOO/mlp.pt" --input 32x64 --strategy fastest
expect_error "nothing to plan" "$PARTITA" plan --devices cpu:0
echo '{"format": "partita.plan"}' >"$WORK/bad_plan.json"
expect_error "missing field 'version'" "$PARTITA" simulate "$WORK/bad_plan.json"
finish

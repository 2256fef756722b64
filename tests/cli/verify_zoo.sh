# verify: our executor reproduces TorchScript (outputs and, with --train, every gradient) on every zoo model.
source "$(dirname "$0")/lib.sh"
check() {
  local model=$1 input=$2
  "$PARTITA" --threads 1 verify "$ZOO/$model.pt" --input "$input" --train --json "$WORK/$model.json" >/dev/null \
    || fail "verify $model"
  [ "$(json_get "$WORK/$model.json" "d['ok'] and d['grads_compared']")" = "True" ] || fail "$model: not ok"
}
check mlp 8x64
check cnn 4x3x32x32
check cnn_train 4x3x32x32
check branchy 2x3x32x32
check python_numbers 8x16
check gpt 2x32:i64:2048
check resnet18 1x3x64x64
check mobilenet_v2 1x3x64x64
# Dropout traced in train mode draws a new mask per run: both sides start from one seed, so they draw the same.
check dropout_encoder 4x6x16
check stochastic 8x32
# Scripted, not traced: its attributes (self.training among them) folded for --train as train() leaves them,
# and without it as eval() does.
check scripted_cnn 4x3x32x32
check scripted_gru 4x6x8
# Loops a trace unrolls: over a count attribute, and F.interpolate's over the input's spatial dimensions.
check scripted_loops 2x3x8x8
# `with torch.no_grad():` inside a scripted forward(): its nodes run without grad (run with it, the gradients
# differ from TorchScript's).
check scripted_no_grad 8x16
# A scripted forward() that prints (print() and str.format() take a variable argument count): run as TorchScript
# runs it. Its lines go to stderr, keeping stdout for the JSON; partita runs a forward many times, so the first
# 20 are shown and one line says the rest are not.
check scripted_prints 8x16
"$PARTITA" --threads 1 verify "$ZOO/scripted_prints.pt" --input 8x16 --repeat 30 --json - >"$WORK/prints.json" \
  2>"$WORK/prints.err" || fail "verify scripted_prints: $(tail -1 "$WORK/prints.err")"
[ "$(json_get "$WORK/prints.json" "d['ok']")" = "True" ] || fail "scripted_prints: not ok"
[ "$(grep -cE '^[0-9]+ rows of 16$' "$WORK/prints.err")" = 20 ] || fail "scripted_prints: not 20 lines shown"
[ "$(grep -c 'the rest of its print() output is not shown' "$WORK/prints.err")" = 1 ] \
  || fail "scripted_prints: the lines left out are not said once"
# A scripted transformer encoder also branches on what the run fixes (ranks, devices, grad mode): folded from
# one run, inference taking torch.nn's fused kernel and training the plain layers, each as TorchScript does.
check scripted_encoder 4x6x16
"$PARTITA" --threads 1 verify "$ZOO/scripted_cnn.pt" --input 4x3x32x32 --json "$WORK/scripted_eval.json" \
  >/dev/null || fail "verify scripted_cnn (eval)"
[ "$(json_get "$WORK/scripted_eval.json" "d['ok']")" = "True" ] || fail "scripted_cnn (eval): not ok"
"$PARTITA" --threads 1 verify "$ZOO/scripted_gru.pt" --input 4x6x8 --json "$WORK/scripted_gru_eval.json" \
  >/dev/null || fail "verify scripted_gru (eval)"
[ "$(json_get "$WORK/scripted_gru_eval.json" "d['ok']")" = "True" ] || fail "scripted_gru (eval): not ok"
"$PARTITA" --threads 1 verify "$ZOO/scripted_encoder.pt" --input 4x6x16 --json "$WORK/scripted_encoder_eval.json" \
  >/dev/null || fail "verify scripted_encoder (eval)"
[ "$(json_get "$WORK/scripted_encoder_eval.json" "d['ok'] and d['max_abs_diff'] == 0")" = "True" ] \
  || fail "scripted_encoder (eval): not ok"
# Its attention warns about a byte mask in a branch the run folds away: not logged, as no one passed a mask.
"$PARTITA" -v analyze "$ZOO/scripted_encoder.pt" --input 4x6x16 >/dev/null 2>"$WORK/scripted_encoder.err" \
  || fail "analyze scripted_encoder"
grep -q "branches of the scripted forward() folded as 1 run" "$WORK/scripted_encoder.err" \
  || fail "scripted_encoder: no fold reported: $(cat "$WORK/scripted_encoder.err")"
if grep -q "warns in forward\|Warning:" "$WORK/scripted_encoder.err"; then
  fail "scripted_encoder: a warning of a folded branch: $(cat "$WORK/scripted_encoder.err")"
fi
# Random draws besides dropout (a VAE's randn_like noise, rand_like, bernoulli units, a batch-wide randn) split
# the batch: the halves check and verify --plan run every float draw at its expected value, so two replicas
# return what one device does.
"$PARTITA" plan "$ZOO/stochastic.pt" --input 8x32 --strategy data --all-devices --cost roofline \
  --json "$WORK/stochastic_data.json" >/dev/null || fail "plan stochastic --strategy data"
"$PARTITA" verify "$ZOO/stochastic.pt" --input 8x32 --plan "$WORK/stochastic_data.json" \
  --json "$WORK/verify_stochastic.json" >/dev/null || fail "verify --plan stochastic"
[ "$(json_get "$WORK/verify_stochastic.json" "d['ok'] and d['plan_max_abs_diff'] < 1e-5")" = "True" ] \
  || fail "verify --plan stochastic: outputs differ"
# --plan: a plan's layout, run by the engine, returns what the module returns (pipeline with 4 microbatches,
# branch, 2 replicas of branchy; a training plan runs its layout forward).
for strategy in pipeline branch data; do
  "$PARTITA" plan "$ZOO/branchy.pt" --input 8x3x32x32 --strategy "$strategy" --all-devices --cost roofline \
    --json "$WORK/branchy_$strategy.json" >/dev/null || fail "plan branchy --strategy $strategy"
  "$PARTITA" verify "$ZOO/branchy.pt" --input 8x3x32x32 --plan "$WORK/branchy_$strategy.json" \
    --json "$WORK/verify_$strategy.json" >/dev/null || fail "verify --plan ($strategy)"
  [ "$(json_get "$WORK/verify_$strategy.json" "d['ok'] and d['plan_max_abs_diff'] < 1e-5")" = "True" ] \
    || fail "verify --plan ($strategy): outputs differ"
done
"$PARTITA" plan "$ZOO/mlp.pt" --input 8x64 --train --strategy pipeline --all-devices --cost roofline \
  --json "$WORK/mlp_train.json" >/dev/null || fail "plan mlp --train"
"$PARTITA" verify "$ZOO/mlp.pt" --input 8x64 --plan "$WORK/mlp_train.json" >/dev/null || fail "verify a training plan"
# Its memory savings (checkpointing, activation offload) have nothing to save in a forward: left out, not refused.
"$PYTHON" - "$WORK/mlp_train.json" "$WORK/mlp_saving.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
for stage in plan["stages"]:
    stage.update(checkpointing="full", offload="activations")
json.dump(plan, open(sys.argv[2], "w"))
PY
"$PARTITA" verify "$ZOO/mlp.pt" --input 8x64 --plan "$WORK/mlp_saving.json" >/dev/null \
  || fail "verify a training plan that checkpoints and offloads"
# It fails where the plan computes something else: batch_flipped (x.flip(0)) split across 2 replicas by hand
# (partita plan keeps its batch whole, and run refuses the plan).
"$PARTITA" plan "$ZOO/batch_flipped.pt" --input 8x16 --devices cpu:0 --cost roofline --json "$WORK/flip1.json" \
  >/dev/null || fail "plan batch_flipped"
"$PYTHON" - "$WORK/flip1.json" "$WORK/flip2.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
plan["groups"][0].update(devices=["cpu:0", "cpu:1"], batch_shares=[4, 4])
json.dump(plan, open(sys.argv[2], "w"))
PY
if "$PARTITA" verify "$ZOO/batch_flipped.pt" --input 8x16 --plan "$WORK/flip2.json" --json "$WORK/flip.json" \
  >/dev/null 2>&1; then
  fail "verify --plan passed a plan that splits batch_flipped"
fi
[ "$(json_get "$WORK/flip.json" "not d['ok'] and d['plan_max_abs_diff'] > 0.1")" = "True" ] \
  || fail "verify --plan: the split batch_flipped plan's difference was not reported"
expect_error "is for a batch of 8 but --input gives 4" "$PARTITA" verify "$ZOO/branchy.pt" --input 4x3x32x32 \
  --plan "$WORK/branchy_data.json"
# A model whose own output holds NaN (torchvision's RAFT at random weights is all NaN): partita reproduces the
# NaN, and verify says so and compares the finite values (it was "max abs difference 0 exceeds rtol").
"$PYTHON" - "$WORK" <<'PY'
import sys, torch
class NanWherePositive(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(16, 4)
    def forward(self, x):
        y = self.head(x)
        return y.masked_fill(y > 0.5, float("nan"))
torch.manual_seed(0)
with torch.no_grad():
    torch.jit.trace(NanWherePositive().eval(), torch.randn(8, 16), check_trace=False).save(f"{sys.argv[1]}/nan.pt")
PY
"$PARTITA" verify "$WORK/nan.pt" --input 8x16 --json "$WORK/nan.json" > "$WORK/nan.txt" \
  || fail "verify of a model with NaN outputs failed: $(cat "$WORK/nan.txt")"
grep -q "value(s) NaN or Inf on both sides (the model's own output" "$WORK/nan.txt" \
  || fail "verify did not say the outputs hold NaN: $(cat "$WORK/nan.txt")"
[ "$(json_get "$WORK/nan.json" "d['nonfinite_on_both_sides'] > 0 and d['nonfinite_on_one_side'] == 0")" = "True" ] \
  || fail "verify --json: NaN counts"
finish

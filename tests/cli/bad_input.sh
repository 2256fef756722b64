# Bad input gets one clear line on stderr and a non-zero exit, never a crash or a stack dump.
source "$(dirname "$0")/lib.sh"
expect_error "does not exist" "$PARTITA" analyze "$WORK/missing.pt" --input 8x3
echo "not a model" >"$WORK/junk.pt"
expect_error "is not a TorchScript file" "$PARTITA" analyze "$WORK/junk.pt" --input 8x3
expect_error "is a torch.save() file (a state_dict or a pickled nn.Module), not TorchScript" "$PARTITA" analyze \
  "$ZOO/state_dict.pt" --input 8x64
expect_error "the packed weights of a quantized model" "$PARTITA" analyze "$ZOO/quantized_mlp.pt" --input 8x64
expect_error "bad --input '8xq'" "$PARTITA" analyze "$ZOO/cnn.pt" --input 8xq
expect_error "unknown dtype 'f33'" "$PARTITA" verify "$ZOO/cnn.pt" --input 8x3x32x32:f33
# Inputs larger than this machine's free memory: one line with their size, not the allocator's dump.
expect_error "take 22.74 PiB, more than the" "$PARTITA" analyze "$ZOO/mlp.pt" --input 99999999999999x64
expect_error "more elements than a tensor can hold" "$PARTITA" analyze "$ZOO/mlp.pt" --input 9999999999x9999999999x99999
expect_error "rejected the input(s) f32[8, 3]" "$PARTITA" analyze "$ZOO/cnn.pt" --input 8x3
expect_error "aten::embedding" "$PARTITA" verify "$ZOO/gpt.pt" --input 2x16
expect_error "takes 1 input(s) but 2" "$PARTITA" analyze "$ZOO/mlp.pt" --input 4x64 --input 4x64
# (A scripted one is run at load to fold its branches: the count is checked before that run, not refused as a branch.)
expect_error "scripted_encoder.pt' takes 1 input(s) but 2" "$PARTITA" analyze "$ZOO/scripted_encoder.pt" \
  --input 4x6x16 --input 4x6x16
expect_error "--input is required" "$PARTITA" analyze "$ZOO/mlp.pt"
expect_error "prim::If" "$PARTITA" analyze "$ZOO/control_flow.pt" --input 4x8
# A scripted model's own check (dropped from the graph partita runs) still refuses an input, in its words.
expect_error "ScriptedCNN expects a 4-d input" "$PARTITA" analyze "$ZOO/scripted_cnn.pt" --input 4x3x32
expect_error "builds a dict (prim::DictConstruct" "$PARTITA" analyze "$ZOO/nested_dict_output.pt" --input 4x16
expect_error "forward() argument 1 (pair.1) is a Tuple[Tensor, Tensor], and partita gives every --input as one tensor" \
  "$PARTITA" analyze "$ZOO/pair_input.pt" --input 8x16
# A forward() that updates its own buffer or weight in place and reads it afterwards: refused at load.
expect_error "forward() updates buffer 'calls' in place (node 0 aten::add_" "$PARTITA" optimize "$ZOO/counts_calls.pt" \
  --input 8x16 --out "$WORK/counts"
expect_error "forward() updates parameter 'head.weight' in place" "$PARTITA" verify "$ZOO/clamps_weight.pt" --input 8x16
expect_error "nn.Embedding(max_norm=...) renormalizes rows of parameter 'embed.weight' in place" "$PARTITA" analyze \
  "$ZOO/embedding_max_norm.pt" --input 8x12:i64:100
# A first output whose number of rows depends on the data cannot be trained: one line naming both shapes.
expect_error "where training expects one row per sample" "$PARTITA" optimize "$ZOO/drops_rows.pt" --input 8x16 \
  --train --out "$WORK/drops"
# Slice assignment into a fresh tensor read afterwards: branch plans cannot keep its storage whole (the engine
# test ASliceAssignedBufferTrainsAsOneDeviceAtEveryAllowedCut runs its pipelines).
expect_error "strategy 'branch' has nothing to offer here: node" "$PARTITA" plan "$ZOO/fills_buffer.pt" --input 8x16 \
  --strategy branch --cost roofline
# A backward that autograd refuses (an in-place write into a tensor saved for a gradient): one line, exit 1, not
# an internal error.
expect_error "LibTorch's autograd refuses its backward" "$PARTITA" plan "$ZOO/writes_saved_input.pt" --input 8x16 \
  --train --cost roofline
# A model without a derivative somewhere (torch.nn's fused transformer kernel, traced in eval mode under no_grad)
# is refused for training by every command, at once and naming the node; it still plans for inference.
fused="$ZOO/fused_encoder.pt"
no_grad="node 0 aten::_transformer_encoder_layer_fwd (layer, transformer.py:506) has no gradient"
for cmd in "optimize --out $WORK/fused" "plan --cost roofline" "plan --cost profiled" "estimate --device cpu" verify; do
  # shellcheck disable=SC2086
  expect_error "cannot train $fused: $no_grad" "$PARTITA" $cmd "$fused" --input 2x8x16 --train
done
"$PARTITA" plan "$fused" --input 2x8x16 --devices cpu:0 --cost roofline --json "$WORK/fused_plan.json" >/dev/null \
  || fail "plan for inference of fused_encoder.pt"
sed 's/"mode": "inference"/"mode": "training"/' "$WORK/fused_plan.json" >"$WORK/fused_train_plan.json"
expect_error "$no_grad" "$PARTITA" run "$fused" --plan "$WORK/fused_train_plan.json" --input 2x8x16 --train
# Nothing to train (no parameters), or a first output that is the model's own loss (0-d; partita computes the
# loss from per-sample outputs): refused at once by every training command (optimize crashed on the second).
for cmd in "optimize --out $WORK/own" "plan --cost roofline" "plan --cost profiled" "estimate --device cpu" verify; do
  # shellcheck disable=SC2086
  expect_error "cannot train $ZOO/own_loss.pt: its first output is a 0-d tensor" "$PARTITA" $cmd "$ZOO/own_loss.pt" \
    --input 8x16 --train
  # shellcheck disable=SC2086
  expect_error "cannot train $ZOO/parameter_free.pt: it has no parameter that requires a gradient" \
    "$PARTITA" $cmd "$ZOO/parameter_free.pt" --input 8x16 --train
  # shellcheck disable=SC2086
  expect_error "cannot train $ZOO/argmax_first.pt: its first output is i64" "$PARTITA" $cmd \
    "$ZOO/argmax_first.pt" --input 8x16 --train
done
# An input without the batch in dim 0 given without ':shared': refused before any work (optimize measured for
# a minute, then found that no candidate could run); analyze still describes the model. tests/cli/shared_input.sh
# runs it with ':shared'.
for cmd in "optimize --out $WORK/shared" plan; do
  # shellcheck disable=SC2086
  expect_error "--input 2 is 16x16 but the batch is 8 (--input 1)" "$PARTITA" $cmd "$ZOO/shared_matrix.pt" \
    --input 8x16 --input 16x16
done
"$PARTITA" plan "$ZOO/mlp.pt" --input 8x64 --json "$WORK/mlp8.json" >/dev/null || fail "plan mlp 8x64"
expect_error "--input 2 is 16x16 but the batch is 8 (--input 1)" "$PARTITA" run "$ZOO/shared_matrix.pt" \
  --input 8x16 --input 16x16 --plan "$WORK/mlp8.json"
"$PARTITA" analyze "$ZOO/shared_matrix.pt" --input 8x16 --input 16x16 >/dev/null || fail "analyze shared_matrix"
# Whole-number options say what they want (CLI11's own check printed a range up to 1.8e308).
expect_error "--microbatches: '0' is not a positive integer" "$PARTITA" plan "$ZOO/mlp.pt" --input 8x64 --microbatches 0
expect_error "--steps: '1.5' is not a positive integer" "$PARTITA" optimize "$ZOO/mlp.pt" --input 8x64 --steps 1.5
# Past an int's range: what to write, not CLI11's "Could not convert".
expect_error "--steps: '99999999999' is too large; write a whole number up to 2147483647" "$PARTITA" optimize \
  "$ZOO/mlp.pt" --input 8x64 --steps 99999999999
# Decimal options: a negative, nan or inf tolerance was an internal error (LibTorch's allclose check); --lr 0 ran
# the optimizer's default rate.
expect_error "--rtol: '-1' is not a non-negative number" "$PARTITA" verify "$ZOO/mlp.pt" --input 8x64 --rtol -1
expect_error "--atol: 'nan' is not a non-negative number" "$PARTITA" verify "$ZOO/mlp.pt" --input 8x64 --atol nan
expect_error "--rtol: 'inf' is not a non-negative number" "$PARTITA" verify "$ZOO/mlp.pt" --input 8x64 --rtol inf
expect_error "--lr: '0' is not a positive number" "$PARTITA" run "$ZOO/mlp.pt" --plan "$ZOO/zoo.json" \
  --input 8x64 --train --lr 0
expect_error "--grace: 'nan' is not a non-negative number" "$PARTITA" launch -n 1 --grace nan -- true
expect_error "--threads: '-2' is not a non-negative integer" "$PARTITA" --threads -2 devices
# Output paths are checked before the work starts (optimize measures for minutes before it writes).
# The engine workers' spin window: a bad value is refused before a worker waits.
"$PARTITA" -q plan "$ZOO/mlp.pt" --input 8x64 --devices cpu:0,cpu:1 --strategy pipeline --cost roofline \
  --json "$WORK/spin_plan.json" >/dev/null
expect_error "PARTITA_SPIN_US='5ms' is not a spin window" env PARTITA_SPIN_US=5ms "$PARTITA" run "$ZOO/mlp.pt" \
  --input 8x64 --plan "$WORK/spin_plan.json"
start=$SECONDS
expect_error "--out '$WORK/junk.pt/out': cannot create the folder" "$PARTITA" optimize "$ZOO/mlp.pt" --input 8x64 --out "$WORK/junk.pt/out"
[ $((SECONDS - start)) -lt 10 ] || fail "optimize took $((SECONDS - start)) s to refuse its --out folder"
expect_error "--json '$WORK' is a folder" "$PARTITA" plan "$ZOO/mlp.pt" --input 8x64 --devices cpu:0 --json "$WORK"
# Exit statuses (README.md): 0 for --help, 2 for a usage error, 1 for what partita refuses.
expect_status() {
  local want=$1 rc=0; shift
  "$@" >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq "$want" ] || fail "want exit status $want, got $rc: $*"
}
expect_status 0 "$PARTITA" --help
expect_status 2 "$PARTITA" plan "$ZOO/mlp.pt" --input 8x64 --microbatches 0
expect_status 2 "$PARTITA" --no-such-option devices
expect_status 2 "$PARTITA" run "$ZOO/mlp.pt" --input 8x64 --plan "$WORK/missing.json"
expect_status 1 "$PARTITA" analyze "$WORK/missing.pt" --input 8x3
finish

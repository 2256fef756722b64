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
check gpt 2x32:i64:2048
check resnet18 1x3x64x64
check mobilenet_v2 1x3x64x64
# Dropout traced in train mode draws a new mask per run: both sides start from one seed, so they draw the same.
check dropout_encoder 4x6x16
finish

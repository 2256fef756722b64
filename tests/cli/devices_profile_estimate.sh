# devices, profile and estimate: JSON outputs have their fields; quick profile mode in a private cache.
source "$(dirname "$0")/lib.sh"
export XDG_CACHE_HOME="$WORK/cache" PARTITA_PROFILE_QUICK=1
"$PARTITA" devices --json "$WORK/devices.json" >/dev/null || fail "devices"
[ "$(json_get "$WORK/devices.json" "d['devices'][0]['id']")" = "cpu" ] || fail "devices: first is not cpu"
[ "$(json_get "$WORK/devices.json" "sorted(d['nvml']) == ['available', 'error'] and 'available' in d['rapl']")" = "True" ] \
  || fail "devices: nvml/rapl fields"

"$PARTITA" profile --json "$WORK/profile.json" >/dev/null || fail "profile"
fields="['fingerprint','key','date','devices','gemm','thread_scaling','best_matmul_threads','best_conv_threads',
'copy_bandwidth','op_overhead_boxed','allreduce_loopback','notes','cache_path','from_cache']"
[ "$(json_get "$WORK/profile.json" "set($fields) <= set(d)")" = "True" ] || fail "profile: missing fields"
[ "$(json_get "$WORK/profile.json" "d['devices'][0]['spec']['measured'] and d['devices'][0]['spec']['peak_flops']['f32'] > 0")" = "True" ] \
  || fail "profile: cpu spec not measured"
[ "$(json_get "$WORK/profile.json" "'loopback_link' in d or 'loopback' in ' '.join(d['notes'])")" = "True" ] \
  || fail "profile: neither a loopback link nor a note saying why not"
"$PARTITA" profile --json "$WORK/profile2.json" >/dev/null || fail "profile (cached)"
[ "$(json_get "$WORK/profile2.json" "d['from_cache']")" = "True" ] || fail "profile: second run not from the cache"

for cost in roofline profiled; do
  "$PARTITA" estimate "$ZOO/mlp.pt" --input 8x64 --device cpu --train --cost $cost --measure \
    --json "$WORK/estimate-$cost.json" >/dev/null || fail "estimate $cost"
  fields="['predicted_ms','measured_ms','predicted_peak_bytes','measured_peak_bytes','predicted_joules','energy_source']"
  [ "$(json_get "$WORK/estimate-$cost.json" "None not in list(map(d.get, $fields)) and d['predicted_ms'] > 0 and d['measured_peak_bytes'] > 0")" = "True" ] \
    || fail "estimate $cost: missing fields"
done
[ "$(json_get "$WORK/estimate-roofline.json" "d['energy_source']")" = "estimated" ] || fail "estimate: energy not labelled"
# The training step is run's: its loss (auto: cross-entropy for the MLP's [8, 10] scores), SGD by default.
[ "$(json_get "$WORK/estimate-roofline.json" "(d['loss'], d['optimizer'])")" = "('cross_entropy', 'sgd')" ] \
  || fail "estimate: not run's loss and the default SGD"
# Another loss and optimizer: Adam's two moments count in memory, and the step's peak, at the optimizer step
# (the MLP's activations are small beside its parameters), is predicted to within 3% of the metered one.
"$PARTITA" estimate "$ZOO/mlp.pt" --input 8x64 --device cpu --train --optimizer adam --loss mse --measure \
  --json "$WORK/estimate-adam.json" >/dev/null || fail "estimate adam"
[ "$(json_get "$WORK/estimate-adam.json" "(d['loss'], d['optimizer'])")" = "('mse', 'adam')" ] \
  || fail "estimate: --loss mse --optimizer adam not taken"
[ "$(json_get "$WORK/estimate-adam.json" "d['predicted_memory']['optimizer_state'] == 2 * d['predicted_memory']['parameters'] and d['predicted_memory']['loss_targets'] == 8 * 10 * 4")" = "True" ] \
  || fail "estimate adam: optimizer state or loss bytes: $(json_get "$WORK/estimate-adam.json" "d['predicted_memory']")"
[ "$(json_get "$WORK/estimate-adam.json" "abs(d['memory_error_pct']) < 3 and d['predicted_peak_bytes'] == d['predicted_memory']['optimizer_step_peak']")" = "True" ] \
  || fail "estimate adam: peak $(json_get "$WORK/estimate-adam.json" "d['predicted_peak_bytes'], d['measured_peak_bytes']")"
# A language model's next-token loss at its backward's start: the kept log-softmax of the [8, 128, 2048]
# logits and its gradient beside the whole forward's saved tensors, before any gradient, is the step's peak
# (predicted to within 0.1% here; the backward walk alone peaks 1 MiB lower).
"$PARTITA" estimate "$ZOO/gpt.pt" --input 8x128:i64:2048 --device cpu --train --measure \
  --json "$WORK/estimate-gpt.json" >/dev/null || fail "estimate gpt"
[ "$(json_get "$WORK/estimate-gpt.json" "d['loss'] == 'next_token' and d['predicted_peak_bytes'] == d['predicted_memory']['loss_backward_peak'] and abs(d['memory_error_pct']) < 2")" = "True" ] \
  || fail "estimate gpt: peak $(json_get "$WORK/estimate-gpt.json" "d['predicted_memory'], d['measured_peak_bytes']")"
expect_error "a loss is for training" "$PARTITA" estimate "$ZOO/mlp.pt" --input 8x64 --device cpu --loss mse
expect_error "unknown optimizer 'adagrad'" "$PARTITA" estimate "$ZOO/mlp.pt" --input 8x64 --device cpu --train \
  --optimizer adagrad
expect_error "bad device id" "$PARTITA" estimate "$ZOO/mlp.pt" --input 8x64 --device gpu0
expect_error "unknown --cost" "$PARTITA" estimate "$ZOO/mlp.pt" --input 8x64 --device cpu --cost magic
expect_error "is not here" "$PARTITA" estimate "$ZOO/mlp.pt" --input 8x64 --device cpu:999
finish

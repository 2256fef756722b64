# Multi-process data parallel: `partita launch -n 2 -- partita run` (and torchrun, when installed) trains the MLP and
# the CNN with the same 20 losses as the in-process engine (collectives through shared memory, and through Gloo), and the GPT with a 2-way tensor plan, one process per device (each holding its parts of the split weights; killed and resumed exactly); a rank that dies or stalls stops the job within 30 s
# with errors naming it (test hooks PARTITA_FAULT_EXIT_AT_STEP / PARTITA_FAULT_HANG_AT_STEP, see docs).
source "$(dirname "$0")/lib.sh"
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores for cpu:0 and cpu:1 (skipped)"; exit 0; }

for model in mlp:8x64 cnn:8x3x32x32; do
  name=${model%%:*}; input=${model#*:}
  "$PARTITA" plan "$ZOO/$name.pt" --input "$input" --devices cpu:0,cpu:1 --strategy data --all-devices --train \
    --json "$WORK/$name.plan.json" >/dev/null || fail "$name: plan"
  [ "$(json_get "$WORK/$name.plan.json" "len(d['stages']) == 1 and len(d['groups'][0]['devices']) == 2")" = True ] \
    || fail "$name: want a one-stage plan on 2 devices"
  run=(run "$ZOO/$name.pt" --input "$input" --plan "$WORK/$name.plan.json" --train --steps 20)
  "$PARTITA" "${run[@]}" --json "$WORK/$name.one.json" >/dev/null || fail "$name: in-process run"
  start=$SECONDS
  "$PARTITA" launch -n 2 -- partita "${run[@]}" --json "$WORK/$name.launch.json" >"$WORK/$name.launch.out" \
    2>"$WORK/$name.launch.err" || fail "$name: launch: $(tail -3 "$WORK/$name.launch.err")"
  echo "$name: launch -n 2 took $((SECONDS - start)) s"
  same_losses "$WORK/$name.one.json" "$WORK/$name.launch.json" || fail "$name: launch losses differ"
  [ "$(grep -c "step time" "$WORK/$name.launch.out")" = 1 ] || fail "$name: only rank 0 should print the table"
  # The ranks share this host: their all-reduces go through shared memory; PARTITA_SHARED_MEMORY=0 is Gloo's
  # loopback TCP, with the same losses.
  [ "$(json_get "$WORK/$name.launch.json" "d['collectives']")" = "{'all_reduce': 'shared_memory'}" ] \
    || fail "$name: collectives $(json_get "$WORK/$name.launch.json" "d['collectives']")"
  grep -q "collectives between the ranks: through shared memory (one host)" "$WORK/$name.launch.out" \
    || fail "$name: the table should say the collectives went through shared memory"
  grep -q "the prediction is the plan's in one process: it does not count passing data between 2 processes" \
    "$WORK/$name.launch.out" || fail "$name: the table should say what the prediction leaves out"
  PARTITA_SHARED_MEMORY=0 "$PARTITA" launch -n 2 -- partita "${run[@]}" --json "$WORK/$name.gloo.json" >/dev/null \
    2>"$WORK/$name.gloo.err" || fail "$name: launch over Gloo: $(tail -3 "$WORK/$name.gloo.err")"
  [ "$(json_get "$WORK/$name.gloo.json" "d['collectives']")" = "{'all_reduce': 'gloo'}" ] \
    || fail "$name: PARTITA_SHARED_MEMORY=0 collectives $(json_get "$WORK/$name.gloo.json" "d['collectives']")"
  same_losses "$WORK/$name.one.json" "$WORK/$name.gloo.json" || fail "$name: Gloo losses differ"
  if [ -n "$TORCHRUN" ]; then
    start=$SECONDS
    "$TORCHRUN" --no_python --redirects 1 --tee 1 --nproc_per_node=2 --master_port="$(free_port)" \
      "$PARTITA" "${run[@]}" --json "$WORK/$name.torchrun.json" >"$WORK/$name.torchrun.log" 2>&1 \
      || fail "$name: torchrun: $(tail -5 "$WORK/$name.torchrun.log")"
    echo "$name: torchrun --nproc_per_node=2 took $((SECONDS - start)) s"
    same_losses "$WORK/$name.one.json" "$WORK/$name.torchrun.json" || fail "$name: torchrun losses differ"
  else
    echo "torchrun not installed: torchrun check skipped"
  fi
done

# A tensor-parallel plan with one process per device: the same 20 losses as the plan run in one process.
"$PARTITA" plan "$ZOO/gpt.pt" --input 4x32:i64:2048 --devices cpu:0,cpu:1 --strategy tensor --train \
  --json "$WORK/gpt.tensor.json" >/dev/null || fail "gpt: plan --strategy tensor"
[ "$(json_get "$WORK/gpt.tensor.json" "d['groups'][0]['parallelism'] == 'tensor' and len(d['groups'][0]['devices']) == 2")" = True ] \
  || fail "gpt: want a 2-way tensor group"
run=(run "$ZOO/gpt.pt" --input 4x32:i64:2048 --plan "$WORK/gpt.tensor.json" --train --steps 20)
"$PARTITA" "${run[@]}" --json "$WORK/gpt.tensor.one.json" >/dev/null || fail "gpt tensor: in-process run"
start=$SECONDS
"$PARTITA" launch -n 2 -- partita "${run[@]}" --json "$WORK/gpt.tensor.launch.json" \
  >"$WORK/gpt.tensor.launch.out" 2>"$WORK/gpt.tensor.launch.err" \
  || fail "gpt tensor: launch: $(tail -3 "$WORK/gpt.tensor.launch.err")"
echo "gpt tensor: launch -n 2 took $((SECONDS - start)) s"
same_losses "$WORK/gpt.tensor.one.json" "$WORK/gpt.tensor.launch.json" || fail "gpt tensor: launch losses differ"
[ "$(json_get "$WORK/gpt.tensor.launch.json" "d['collectives']['tensor_group']")" = shared_memory ] \
  || fail "gpt tensor: collectives $(json_get "$WORK/gpt.tensor.launch.json" "d['collectives']")"
PARTITA_SHARED_MEMORY=0 "$PARTITA" launch -n 2 -- partita "${run[@]}" --json "$WORK/gpt.tensor.gloo.json" >/dev/null \
  2>"$WORK/gpt.tensor.gloo.err" || fail "gpt tensor: launch over Gloo: $(tail -3 "$WORK/gpt.tensor.gloo.err")"
[ "$(json_get "$WORK/gpt.tensor.gloo.json" "d['collectives']['tensor_group']")" = gloo ] \
  || fail "gpt tensor: PARTITA_SHARED_MEMORY=0 collectives $(json_get "$WORK/gpt.tensor.gloo.json" "d['collectives']")"
same_losses "$WORK/gpt.tensor.one.json" "$WORK/gpt.tensor.gloo.json" || fail "gpt tensor: Gloo losses differ"
[ "$(json_get "$WORK/gpt.tensor.launch.json" "sorted(w['device'] for w in d['workers'])")" = "['cpu:0', 'cpu:1']" ] \
  || fail "gpt tensor: rank 0 should report both ranks' devices"
# Each rank holds only its device's parts of the split weights (Megatron's layout): less than the model, and
# the two together more than it only by the weights both read whole (embeddings' positions, norms, biases).
"$PARTITA" analyze "$ZOO/gpt.pt" --input 4x32:i64:2048 --json "$WORK/gpt.analyze.json" >/dev/null || fail "gpt: analyze"
weights=$(json_get "$WORK/gpt.analyze.json" "d['param_bytes']")
[ "$(json_get "$WORK/gpt.tensor.launch.json" "all(m < 0.6 * $weights for m in d['model_bytes_per_rank']) and sum(d['model_bytes_per_rank']) > $weights")" = True ] \
  || fail "gpt tensor: model tensors per rank $(json_get "$WORK/gpt.tensor.launch.json" "d['model_bytes_per_rank']") (weights $weights)"
# Killed at step 7 and resumed from the checkpoint of step 5 (rank 0 writes it whole: the ranks gather their
# parts and optimizer state for it): the same 20 losses as the uninterrupted run, bit for bit.
run0=("${run[@]}" --warmup 0)
"$PARTITA" launch -n 2 -- partita "${run0[@]}" --json "$WORK/gpt.tensor.calm.json" >/dev/null 2>"$WORK/tp_ck.err" \
  || fail "gpt tensor: launch without warm-up: $(tail -3 "$WORK/tp_ck.err")"
expect_exact_resume "gpt tensor" "$WORK/gpt.tensor.calm.json" "$WORK/tp_ck" "${run0[@]:1}"
# Rank 1 dies or stalls at the start of step 5: rank 0, inside the step's first all-gather, names it.
expect_rank_faults ".*tensor-parallel exchange of ranks 0 1 of step 5 failed: rank 1 did not reach step 5" \
  ".*tensor-parallel exchange of ranks 0 1 of step 5 failed: rank 1 did not reach step 5" "${run[@]}"

# Faults: rank 1 dies (exit) or stalls at engine step 5; launcher and rank 0 stop within 30 s and name rank 1.
run=(run "$ZOO/mlp.pt" --input 8x64 --plan "$WORK/mlp.plan.json" --train --steps 20)
# Through shared memory rank 0 sees rank 1's process gone (its pid) or the timeout pass.
expect_rank_faults ".*step 5.*rank 1 did not reach step 5.*(shared memory: rank 1: its process [0-9]* exited)" \
  ".*rank 1 did not reach step 5.*(shared memory: rank 1: it did not arrive before the timeout)" "${run[@]}"
# The same through Gloo: a dead peer's sockets close, a stalled one's timeout passes.
export PARTITA_SHARED_MEMORY=0
expect_rank_faults ".*step 5.*rank 1 did not reach step 5.*(gloo: " ".*rank 1 did not reach step 5.*(gloo: " "${run[@]}"
unset PARTITA_SHARED_MEMORY

# Refusals: a world size that does not match the plan's devices (nor its stages), a malformed RANK.
expect_error "a 3-process run needs a one-stage data- or tensor-parallel plan with 3 devices" \
  env WORLD_SIZE=3 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 "$PARTITA" "${run[@]}"
expect_error "RANK='x' is not an integer" env WORLD_SIZE=2 RANK=x MASTER_PORT=1 "$PARTITA" "${run[@]}"
finish

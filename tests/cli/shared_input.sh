# An input without the batch (`--input 16x16:shared`, a matrix every sample uses): shared_matrix(x, w) reads w
# in its first nodes and its last. Every strategy on cpu:0 + cpu:1, in one process and (data, pipeline, tensor)
# one process per device, trains with the one-device plan's 20 losses; optimize runs it end to end; a batchless
# input given without ':shared', and inputs that are all shared, are refused with one line. A shared first
# input (masked_tokens) trains as one device does.
source "$(dirname "$0")/lib.sh"
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores for cpu:0 and cpu:1 (skipped)"; exit 0; }
model=$ZOO/shared_matrix.pt
inputs=(--input 16x16 --input 16x16:shared)

"$PARTITA" analyze "$model" "${inputs[@]}" >"$WORK/analyze.txt" || fail "analyze"
grep -q "inputs       f32\[16, 16\], f32\[16, 16\] (shared: no batch)" "$WORK/analyze.txt" \
  || fail "analyze should mark the shared input: $(grep inputs "$WORK/analyze.txt")"
grep -q "^batch split  safe" "$WORK/analyze.txt" || fail "the batch should split: $(grep "batch split" "$WORK/analyze.txt")"

"$PARTITA" plan "$model" "${inputs[@]}" --devices cpu:0 --train --json "$WORK/one.plan.json" >/dev/null \
  || fail "plan on cpu:0"
"$PARTITA" run "$model" "${inputs[@]}" --plan "$WORK/one.plan.json" --train --steps 20 --json "$WORK/one.json" \
  >/dev/null || fail "run on cpu:0"
for strategy in data pipeline tensor branch; do
  "$PARTITA" plan "$model" "${inputs[@]}" --devices cpu:0,cpu:1 --strategy $strategy --all-devices --train \
    --cost roofline --json "$WORK/$strategy.plan.json" >/dev/null || { fail "$strategy: plan"; continue; }
  [ "$(json_get "$WORK/$strategy.plan.json" "sum(len(g['devices']) for g in d['groups'])")" = 2 ] \
    || fail "$strategy: want a plan on both devices"
  run=(run "$model" "${inputs[@]}" --plan "$WORK/$strategy.plan.json" --train --steps 20)
  "$PARTITA" "${run[@]}" --json "$WORK/$strategy.json" >/dev/null || { fail "$strategy: run"; continue; }
  same_losses "$WORK/one.json" "$WORK/$strategy.json" || fail "$strategy: losses differ from one device's"
  [ $strategy = branch ] && continue  # multi-process runs take data, pipeline and tensor plans
  PATH=$(dirname "$PARTITA"):$PATH "$PARTITA" launch -n 2 -- partita "${run[@]}" --json "$WORK/$strategy.launch.json" \
    >"$WORK/$strategy.launch.out" 2>&1 || { fail "$strategy: launch: $(tail -3 "$WORK/$strategy.launch.out")"; continue; }
  same_losses "$WORK/one.json" "$WORK/$strategy.launch.json" || fail "$strategy: launch losses differ"
done

"$PARTITA" optimize "$model" "${inputs[@]}" --train --out "$WORK/optimize" --json "$WORK/optimize.json" \
  >"$WORK/optimize.out" 2>&1 || fail "optimize: $(tail -3 "$WORK/optimize.out")"
[ "$(json_get "$WORK/optimize.json" "d['plan_ms'] > 0 and d['baseline_ms'] > 0")" = True ] \
  || fail "optimize: want measured plan and baseline step times"

# A shared first input: masked_tokens(mask, ids) takes its causal mask first, so the batch comes from the ids,
# and the next-token loss reads them (not the mask). Every strategy, and data and pipeline plans one process per
# device, train with one device's losses.
mt=$ZOO/masked_tokens.pt
mt_inputs=(--input 8x8:bool:shared --input 4x8:i64:100)
"$PARTITA" analyze "$mt" "${mt_inputs[@]}" >"$WORK/mt.analyze.txt" || fail "masked_tokens: analyze"
grep -q "^batch split  safe (checked by running at batch 4 and 5" "$WORK/mt.analyze.txt" \
  || fail "masked_tokens: want the batch of the second input: $(grep "batch split" "$WORK/mt.analyze.txt")"
"$PARTITA" plan "$mt" "${mt_inputs[@]}" --devices cpu:0 --train --json "$WORK/mt.one.plan.json" >/dev/null \
  || fail "masked_tokens: plan on cpu:0"
[ "$(json_get "$WORK/mt.one.plan.json" "d['global_batch']")" = 4 ] || fail "masked_tokens: want a batch of 4"
"$PARTITA" run "$mt" "${mt_inputs[@]}" --plan "$WORK/mt.one.plan.json" --train --steps 20 --json "$WORK/mt.one.json" \
  >/dev/null || fail "masked_tokens: run on cpu:0"
# Next-token cross-entropy over 100 token ids starts near ln(100) = 4.6 (MSE on 100 logits would be near 1).
[ "$(json_get "$WORK/mt.one.json" "d['loss'] == 'next_token' and 4.2 < d['losses'][0] < 5.2")" = True ] \
  || fail "masked_tokens: want next-token losses, got $(json_get "$WORK/mt.one.json" "d['loss'], d['losses'][0]")"
for strategy in data pipeline tensor branch; do
  "$PARTITA" plan "$mt" "${mt_inputs[@]}" --devices cpu:0,cpu:1 --strategy $strategy --all-devices --train \
    --cost roofline --json "$WORK/mt.$strategy.plan.json" >/dev/null || { fail "masked_tokens $strategy: plan"; continue; }
  run=(run "$mt" "${mt_inputs[@]}" --plan "$WORK/mt.$strategy.plan.json" --train --steps 20)
  "$PARTITA" "${run[@]}" --json "$WORK/mt.$strategy.json" >/dev/null || { fail "masked_tokens $strategy: run"; continue; }
  same_losses "$WORK/mt.one.json" "$WORK/mt.$strategy.json" || fail "masked_tokens $strategy: losses differ"
  [ $strategy = data ] || [ $strategy = pipeline ] || continue
  PATH=$(dirname "$PARTITA"):$PATH "$PARTITA" launch -n 2 -- partita "${run[@]}" --json "$WORK/mt.$strategy.launch.json" \
    >"$WORK/mt.$strategy.launch.out" 2>&1 || { fail "masked_tokens $strategy: launch: $(tail -3 "$WORK/mt.$strategy.launch.out")"; continue; }
  same_losses "$WORK/mt.one.json" "$WORK/mt.$strategy.launch.json" || fail "masked_tokens $strategy: launch losses differ"
done

expect_error "every --input is shared (all 2): one input must carry the batch in dim 0" "$PARTITA" plan "$mt" \
  --input 8x8:bool:shared --input 4x8:i64:100:shared
expect_error "--input 2 is 16x16 but the batch is 8 (--input 1): partita splits the batch along dim 0 of every input; give it the batch in dim 0, or write an input without the batch (a mask or matrix every sample uses) as 16x16:shared" \
  "$PARTITA" plan "$model" --input 8x16 --input 16x16
finish

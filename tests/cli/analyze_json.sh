# analyze --json: exact parameter counts and FLOPs within a few percent of an independent count made from the
# module definitions in Python (conv/linear multiply-adds counted by hooks).
source "$(dirname "$0")/lib.sh"
"$PYTHON" "$SRC/tests/cli/count_flops.py" "$WORK/expected.json"
for model in mlp cnn branchy gpt resnet18 mobilenet_v2; do
  input=$(json_get "$ZOO/zoo.json" "d['$model']['input'][0]")
  "$PARTITA" --threads 1 analyze "$ZOO/$model.pt" --input "$input" --json "$WORK/$model.json" --dot "$WORK/$model.dot" >/dev/null \
    || { fail "analyze $model"; continue; }
  params=$(json_get "$WORK/$model.json" "d['params']")
  want_params=$(json_get "$WORK/expected.json" "d['$model']['params']")
  [ "$params" = "$want_params" ] || fail "$model params $params != $want_params"
  # conv/linear/matmul FLOPs must match the independent count within 1%; the total (which adds norms, pooling,
  # activations) may only exceed it by the elementwise work.
  ratio=$("$PYTHON" -c "
import json
ops = {'aten::_convolution', 'aten::linear', 'aten::matmul', 'aten::addmm', 'aten::mm', 'aten::bmm', 'aten::baddbmm'}
a = json.load(open('$WORK/$model.json'))
b = json.load(open('$WORK/expected.json'))['$model']['flops']
mm = sum(n['flops'] for n in a['nodes'] if n['op'] in ops)
print(f\"{mm / b:.4f} {a['flops'] / b:.4f}\")")
  "$PYTHON" -c "import sys; m, t = map(float, '$ratio'.split()); sys.exit(0 if 0.99 <= m <= 1.01 and m <= t <= 1.15 else 1)" \
    || fail "$model flops ratios (matmul/conv, total) = $ratio"
  grep -q "digraph partita" "$WORK/$model.dot" || fail "$model dot"
  echo "$model params=$params flops ratio=$ratio"
done
# What tensor parallelism splits and over how many devices partita run can split it (the engine's own check).
"$PYTHON" - "$WORK" <<'PY' || fail "tensor split"
import json, sys
w = sys.argv[1]
gpt = json.load(open(f"{w}/gpt.json"))["tensor_split"]
assert (gpt["column"], gpt["row"], gpt["vocabulary"]) == (9, 8, 1), gpt
assert gpt["refusal_by_degree"]["2"] is None and gpt["refusal_by_degree"]["4"] is None, gpt
assert "aten::view (0.attn)" in gpt["refusal_by_degree"]["8"], gpt  # 4 heads do not split 8 ways
mlp = json.load(open(f"{w}/mlp.json"))["tensor_split"]
assert mlp["refusal_by_degree"]["2"] is None and "(fc3)" in mlp["refusal_by_degree"]["4"], mlp
PY
# GPT's one region: the token and position embedding lookups, 0 FLOPs each but bytes moved (the table rows
# they read and the embeddings they write; the token lookup's [B, T, E] output alone is 8x128x256 floats).
"$PYTHON" - "$WORK" <<'PY' || fail "branch work"
import json, sys
gpt = json.load(open(f"{sys.argv[1]}/gpt.json"))
(region,) = gpt["branches"]
assert [b["flops"] for b in region["branches"]] == [0, 0], region
assert max(b["bytes_moved"] for b in region["branches"]) >= 8 * 128 * 256 * 4, region
assert min(b["bytes_moved"] for b in region["branches"]) > 0, region
PY
finish

# verify on torchvision models that are not in the zoo (traced here, random weights, nothing downloaded).
source "$(dirname "$0")/lib.sh"
"$PYTHON" - "$WORK" <<'PY'
import sys, torch, torchvision
torch.manual_seed(0)
for name in ["googlenet", "squeezenet1_1", "shufflenet_v2_x0_5", "regnet_x_400mf", "densenet121"]:
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    m = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    with torch.no_grad():
        torch.jit.trace(m, torch.randn(1, 3, 64, 64), check_trace=False).save(f"{sys.argv[1]}/{name}.pt")
PY
for name in googlenet squeezenet1_1 shufflenet_v2_x0_5 regnet_x_400mf densenet121; do
  "$PARTITA" --threads 1 verify "$WORK/$name.pt" --input 1x3x64x64 --train --json "$WORK/$name.json" >/dev/null \
    || fail "verify $name"
done
# The same models saved with torch.jit.script (their attributes folded as train() or eval() left them, their
# shape checks dropped), in inference and training; googlenet's scripted forward() warns on every call.
"$PYTHON" - "$WORK" <<'PY'
import sys, torch, torchvision
torch.manual_seed(0)
for name in ["resnet18", "googlenet", "efficientnet_b0", "densenet121"]:
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    m = getattr(torchvision.models, name)(weights=None, **kwargs)
    torch.jit.script(m).save(f"{sys.argv[1]}/scripted_{name}.pt")
# A small vision transformer (vit_b_16's code, fewer and narrower layers): its multi-head attention branches
# on the rank of a class token and patches joined by torch.cat, folded from one run.
from torchvision.models.vision_transformer import VisionTransformer
vit = VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
torch.jit.script(vit).save(f"{sys.argv[1]}/scripted_vit.pt")
PY
# googlenet's forward() warns on every call: logged once at load, not printed again by the runs partita makes
# to learn its branches and check its input.
"$PARTITA" -v analyze "$WORK/scripted_googlenet.pt" --input 2x3x64x64 >/dev/null 2>"$WORK/googlenet.err" \
  || fail "analyze scripted googlenet"
[ "$(grep -c "warns in forward(): Scripted GoogleNet always returns" "$WORK/googlenet.err")" = 1 ] \
  || fail "scripted googlenet: its warning not logged once: $(cat "$WORK/googlenet.err")"
if grep -q "Warning:" "$WORK/googlenet.err"; then fail "scripted googlenet: printed by a check run"; fi
for name in resnet18 googlenet efficientnet_b0 densenet121 vit; do
  for train in "" --train; do
    "$PARTITA" --threads 1 verify "$WORK/scripted_$name.pt" --input 2x3x64x64 $train \
      --json "$WORK/scripted_$name.json" >/dev/null || fail "verify scripted $name $train"
    [ "$(json_get "$WORK/scripted_$name.json" "d['ok']")" = "True" ] || fail "scripted $name $train: not ok"
  done
done
# A segmentation model returns a dict ({"out": ...}, traced with strict=False): partita takes its values.
"$PYTHON" - "$WORK" <<'PY'
import sys, torch, torchvision
torch.manual_seed(0)
m = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4)
with torch.no_grad():
    torch.jit.trace(m.eval(), torch.randn(2, 3, 64, 64), check_trace=False, strict=False).save(f"{sys.argv[1]}/lraspp.pt")
PY
"$PARTITA" --threads 1 verify "$WORK/lraspp.pt" --input 2x3x64x64 --train --json "$WORK/lraspp.json" >/dev/null \
  || fail "verify lraspp (a dict output)"
"$PARTITA" analyze "$WORK/lraspp.pt" --input 2x3x64x64 | grep -q "^outputs      f32\[2, 4, 64, 64\] (the values of the dict forward() returns, keys out" \
  || fail "analyze lraspp: the dict's keys are not named"
finish

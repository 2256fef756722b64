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
finish

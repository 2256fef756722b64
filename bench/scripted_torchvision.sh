#!/usr/bin/env bash
# torchvision's classification models saved with torch.jit.script (random weights, nothing downloaded), each
# checked by `partita verify` against TorchScript in inference and in training (outputs and every gradient);
# prints one row per model and mode: imported or the refusal's reason, and the largest differences.
#   bash bench/scripted_torchvision.sh [PARTITA]
set -euo pipefail
cd "$(dirname "$0")/.."
partita=${1:-${PARTITA_BUILD_DIR:-build}/apps/partita/partita}
[ -x "$partita" ] || { echo "scripted_torchvision: $partita is not an executable (scripts/build makes it)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
models="resnet18 mobilenet_v2 squeezenet1_1 googlenet shufflenet_v2_x0_5 regnet_x_400mf densenet121 efficientnet_b0
convnext_tiny vit_b_16"
# shellcheck disable=SC2086
/usr/bin/python3 - "$work" $models <<'PY' 2>/dev/null
import sys, torch, torchvision
for name in sys.argv[2:]:
    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    torch.jit.script(getattr(torchvision.models, name)(weights=None, **kwargs)).save(f"{sys.argv[1]}/{name}.pt")
PY
echo "| model | mode | result | outputs max abs diff | gradients compared, max abs diff |"
echo "|---|---|---|---|---|"
for name in $models; do
  input=2x3x64x64
  [ "$name" = vit_b_16 ] && input=2x3x224x224
  for mode in inference training; do
    train=()
    [ "$mode" = training ] && train=(--train)
    if "$partita" -q --threads 1 verify "$work/$name.pt" --input "$input" "${train[@]}" --json "$work/v.json" \
      >/dev/null 2>"$work/err"; then
      /usr/bin/python3 - "$work/v.json" "$name" "$mode" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
grads = f"all, {d['grad_max_abs_diff']:g}" if d.get("grads_compared") else "-"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {'ok' if d['ok'] else 'DIFFERS'} | {d['max_abs_diff']:g} | {grads} |")
PY
    else
      echo "| $name | $mode | refused: $(sed 's/|/\\|/g' "$work/err" | cut -c1-140) | | |"
    fi
  done
done

#!/usr/bin/env bash
# What loading a scripted model costs against the same model traced: torchvision's vit_b_16 (random weights,
# nothing downloaded) saved both ways, `partita -q analyze` of each timed in alternating rounds; prints each
# time and the medians.
#   bash bench/scripted_load_cost.sh [PARTITA] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
partita=${1:-${PARTITA_BUILD_DIR:-build}/apps/partita/partita}
rounds=${2:-3}
[ -x "$partita" ] || { echo "scripted_load_cost: $partita is not an executable (scripts/build makes it)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$work" <<'PY' 2>/dev/null
import sys, torch, torchvision
torch.manual_seed(0)
m = torchvision.models.vit_b_16(weights=None).eval()
torch.jit.script(m).save(f"{sys.argv[1]}/scripted.pt")
with torch.no_grad():
    torch.jit.trace(m, torch.randn(1, 3, 224, 224), check_trace=False).save(f"{sys.argv[1]}/traced.pt")
PY
for _ in $(seq "$rounds"); do
  for kind in scripted traced; do
    start=$EPOCHREALTIME
    "$partita" -q analyze "$work/$kind.pt" --input 1x3x224x224 >/dev/null
    echo "$kind $start $EPOCHREALTIME" >>"$work/times"
  done
done
/usr/bin/python3 - "$work/times" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    kind, start, end = line.split()
    times.setdefault(kind, []).append(float(end) - float(start))
for kind, seconds in times.items():
    print(kind, " ".join(f"{x:.2f}" for x in seconds))
s, t = statistics.median(times["scripted"]), statistics.median(times["traced"])
print(f"median load + analyze of vit_b_16: scripted {s:.2f} s, traced {t:.2f} s ({s / t:.2f}x)")
PY

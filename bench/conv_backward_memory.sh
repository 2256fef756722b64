#!/bin/bash
# The working memory of a CPU convolution's backward (cost/memory.h's backward_kernel_scratch_bytes): small
# models of one 3x3 convolution (C_IN to C_OUT channels on HxW, padding 1, no bias) then a linear layer to 10
# classes, with and without a 1x1 convolution from 3 channels before it (so that its input needs a gradient
# or not), trained on cpu:0 (8 samples, SGD, cross-entropy, --cost roofline) with 1 microbatch of 8 rows
# (LibTorch 1.13 runs the call in oneDNN) and 8 microbatches of 1 row (its native kernel). Prints each run's
# measured host peak (partita's allocator counter) beside the plan's prediction, and the convolution's
# input and column buffer for one microbatch.
# Memory is deterministic up to the allocator's timing: one run per row. With KEEP=DIR the models and each
# case's plans stay in DIR (NAME.pt, NAME.mbM.plan.json), e.g. for scripts/memory-timeline.
#   [KEEP=DIR] bench/conv_backward_memory.sh [BUILD_DIR]   (default build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
PARTITA=$build/apps/partita/partita
PYTHON=${PYTHON:-/usr/bin/python3}
if [ -n "${KEEP:-}" ]; then
  out=$KEEP
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
# name, whether a 1x1 convolution comes first, C_IN, C_OUT, H (= W)
cases=("plain16 0 16 32 16" "plain32 0 32 64 8" "after32 1 32 64 8" "after64 1 64 64 8" "after32w 1 32 64 16")
printf '%-9s %-12s %-3s %-15s %-16s %-10s %-12s %s\n' model "input grad" mb "measured (KiB)" "predicted (KiB)" \
  "error" "input (KiB)" "columns (KiB)"
for c in "${cases[@]}"; do
  read -r name before c_in c_out hw <<<"$c"
  "$PYTHON" - "$out/$name.pt" "$before" "$c_in" "$c_out" "$hw" <<'PY'
import sys, torch, torch.nn as nn
path, before, c_in, c_out, hw = sys.argv[1], sys.argv[2] == "1", *map(int, sys.argv[3:6])
torch.manual_seed(0)
layers = [nn.Conv2d(3, c_in, 1, bias=False)] if before else []
layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(c_out * hw * hw, 10)]
torch.jit.trace(nn.Sequential(*layers), torch.randn(8, 3 if before else c_in, hw, hw)).save(path)
PY
  channels=$c_in
  [ "$before" = 1 ] && channels=3
  for mb in 1 8; do
    "$PARTITA" -q plan "$out/$name.pt" --input "8x${channels}x${hw}x${hw}" --train --devices cpu:0 --optimizer sgd \
      --cost roofline --microbatches "$mb" --json "$out/$name.mb$mb.plan.json" >/dev/null
    "$PARTITA" -q run "$out/$name.pt" --input "8x${channels}x${hw}x${hw}" --train --steps 4 \
      --plan "$out/$name.mb$mb.plan.json" \
      --json "$out/run.json" >/dev/null
    "$PYTHON" - "$out/run.json" "$name" "$before" "$mb" "$c_in" "$hw" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
name, before, mb, c_in, hw = sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
measured, predicted = run["measured_host_peak_bytes"], run["predicted_host_peak_bytes"]
rows = 8 // mb
kib = lambda b: f"{b / 1024:.1f}"
print(f"{name:<9} {'yes' if before else 'no':<12} {mb:<3} {kib(measured):<15} {kib(predicted):<16} "
      f"{100 * (predicted / measured - 1):+.1f}%{'':<4} {kib(rows * c_in * hw * hw * 4):<12} "
      f"{kib(rows * c_in * 9 * hw * hw * 4)}", flush=True)
PY
  done
done

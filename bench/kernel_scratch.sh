#!/bin/bash
# The working memory of a convolution or max pooling beyond its input and output, predicted vs measured:
# traces one-op models (one convolution, or one max pooling) with python3-torch, then runs
# `partita estimate MODEL --device D --measure` on each at several batch sizes, on one core (cpu:0) and on the
# whole CPU, and prints partita's predicted inference peak beside the measured one (the model's tensors and
# what the forward allocates, counted by partita's allocator). The cases cover LibTorch's CPU kernel choice
# (native im2col vs oneDNN: one row or several, a 1x1 kernel on one thread or two, a 5x5 kernel, a grouped
# one, the 20,480-element threshold) and what each holds (cost/memory.h, kernel_scratch_bytes).
#
#   bench/kernel_scratch.sh [PARTITA_BINARY]
#   default: build/apps/partita/partita; about a minute here.
#
# Memory is deterministic; one run per row is enough.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PARTITA=${1:-$here/build/apps/partita/partita}
PYTHON=${PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PYTHON" - "$PARTITA" "$out" <<'PY'
import json, statistics, subprocess, sys
import torch

partita, out = sys.argv[1:3]

class Conv(torch.nn.Module):
    def __init__(self, c_in, c_out, k, stride, groups):
        super().__init__()
        self.c = torch.nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False)
    def forward(self, x):
        return self.c(x)

class MaxPool(torch.nn.Module):
    def __init__(self, k, stride):
        super().__init__()
        self.k, self.stride = k, stride
    def forward(self, x):
        return torch.nn.functional.max_pool2d(x, self.k, self.stride, self.k // 2)

# name: (module, channels, spatial size)
cases = {
    "conv 512->512 3x3 4x4": (Conv(512, 512, 3, 1, 1), 512, 4),
    "conv 64->128 3x3 28x28": (Conv(64, 128, 3, 1, 1), 64, 28),
    "conv 128->64 3x3 28x28": (Conv(128, 64, 3, 1, 1), 128, 28),
    "conv 64->128 3x3 s2 28x28": (Conv(64, 128, 3, 2, 1), 64, 28),
    "conv 64->64 1x1 16x16": (Conv(64, 64, 1, 1, 1), 64, 16),
    "conv 64->64 1x1 s2 16x16": (Conv(64, 64, 1, 2, 1), 64, 16),
    "conv 32->32 5x5 8x8": (Conv(32, 32, 5, 1, 1), 32, 8),
    "conv 256 depthwise 3x3 8x8": (Conv(256, 256, 3, 1, 256), 256, 8),
    "conv 20->64 3x3 32x32": (Conv(20, 64, 3, 1, 1), 20, 32),
    "conv 21->64 3x3 32x32": (Conv(21, 64, 3, 1, 1), 21, 32),
    "max_pool 3 s1 128x32x32": (MaxPool(3, 1), 128, 32),
    "max_pool 2 s2 128x32x32": (MaxPool(2, 2), 128, 32),
}
rows = []
print(f"{'case':<28} {'device':<6} {'batch':>5} {'predicted KiB':>14} {'measured KiB':>13} {'error':>8}")
for i, (name, (module, c, hw)) in enumerate(cases.items()):
    path = f"{out}/case{i}.pt"
    torch.jit.trace(module.eval(), torch.randn(2, c, hw, hw)).save(path)
    for device in ["cpu:0", "cpu"]:
        for batch in [1, 2, 16]:
            r = subprocess.run([partita, "estimate", path, "--input", f"{batch}x{c}x{hw}x{hw}", "--device",
                                device, "--measure", "--json", "-"], capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"partita estimate failed on {name}: {r.stderr.strip().splitlines()[-1]}")
            d = json.loads(r.stdout)
            p, m = d["predicted_peak_bytes"], d["measured_peak_bytes"]
            err = 100.0 * (p - m) / m
            rows.append(abs(err))
            print(f"{name:<28} {device:<6} {batch:>5} {p / 1024:>14.1f} {m / 1024:>13.1f} {err:>+7.1f}%")
print(f"median |error| {statistics.median(rows):.1f}% over {len(rows)} rows, worst {max(rows):.1f}%")
PY

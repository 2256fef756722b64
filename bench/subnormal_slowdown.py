#!/usr/bin/python3
"""Why repeated training runs on one example batch slow down: the overfit model's backward runs on subnormal floats.

Trains a zoo model (default build/models/mlp.pt, input 256x64, 10 classes) with Adam (lr 0.01, partita's default until 2026-12-02)
on one fixed batch, a fresh optimizer every phase as `partita optimize` used to do for each measured run. Each
phase times 40 steps as PyTorch computes them, then 20 more with flush-to-zero on; prints both medians and the
number of subnormal softmax outputs. On the Intel Xeon VM of 2026-11-30: 4.4 -> 25.6 ms without flush-to-zero
over 14 phases, 4-6 ms with it. One core: run with OPENBLAS_NUM_THREADS=1.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/subnormal_slowdown.py [MODEL.pt] [PHASES]
"""
import statistics
import sys
import time

import torch

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32


def timed_steps(model, opt, x, y, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        for p in model.parameters():
            p.grad = None
        out = model(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        opt.step()
        times.append((time.perf_counter() - t0) * 1e3)
    probs = torch.softmax(out.detach(), 1)
    return statistics.median(times), int(((probs > 0) & (probs < TINY)).sum())


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "build/models/mlp.pt"
    phases = int(sys.argv[2]) if len(sys.argv) > 2 else 14
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.jit.load(path)
    x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
    for phase in range(phases):
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        torch.set_flush_denormal(False)
        plain, subnormal = timed_steps(model, opt, x, y, 40)
        torch.set_flush_denormal(True)
        flushed, _ = timed_steps(model, opt, x, y, 20)
        torch.set_flush_denormal(False)
        print(f"phase {phase + 1:2d}: {plain:6.2f} ms per step ({subnormal:4d} subnormal softmax outputs) | "
              f"flush-to-zero {flushed:6.2f} ms")


if __name__ == "__main__":
    main()

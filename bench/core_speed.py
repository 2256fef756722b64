#!/usr/bin/python3
"""How steady one core of this machine is: a fixed matrix multiply timed in short windows.

Times a 256x1024x1024 float32 matmul on one core (torch 1 thread; run with OPENBLAS_NUM_THREADS=1) in 0.25 s
windows for DURATION seconds and prints min, p10, median, p90 and max of the per-matmul time. Run it with nothing
else on the machine: a wide p90/median means predictions from a cost table measured at another moment can miss
by as much. Intel Xeon VM, 2026-11-30: min 5.42, median 6.05, p90 10.27, max 13.57 ms (later the same day:
median 9.29, max 196 ms).

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/core_speed.py [DURATION_S] [CORE]
"""
import os
import sys
import time

import torch


def main():
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    core = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    torch.set_num_threads(1)
    os.sched_setaffinity(0, {core})
    a, b = torch.randn(256, 1024), torch.randn(1024, 1024)
    for _ in range(5):
        a @ b
    windows = []
    start = time.perf_counter()
    while time.perf_counter() - start < duration:
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < 0.25:
            a @ b
            n += 1
        windows.append((time.perf_counter() - t0) / n * 1e3)
    windows.sort()
    q = lambda p: windows[int(p * (len(windows) - 1))]
    print(f"core {core}, 256x1024x1024 matmul, {len(windows)} windows of 0.25 s: min {windows[0]:.2f} "
          f"p10 {q(0.1):.2f} median {q(0.5):.2f} p90 {q(0.9):.2f} max {windows[-1]:.2f} ms")


if __name__ == "__main__":
    main()

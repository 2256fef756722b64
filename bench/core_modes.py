#!/usr/bin/python3
"""Do this machine's cores change speed together or each on its own? A fixed matmul on every core at once.

One process per core, each pinned, times a 128x512x512 float32 matmul (torch 1 thread; run with
OPENBLAS_NUM_THREADS=1) in 0.1 s windows for DURATION seconds, all starting at the same moment. Prints each
core's median window, and the figure partita's co-run measurement calls stragglers (cost/corun.h): the median
over windows of the slowest core's time over that core's own median. 1.00 means the cores speed up and slow
down together (or not at all); above it, a synchronous step on several cores waits for whichever is slow.
Also prints how long the slow stretches last (windows more than 25% above the core's median, in a row).
Intel Xeon VM, 2026-11-30, 20 s: medians 1.056 and 1.059 ms (min 0.67, max 2.07 on both), 16 and 12 slow
stretches (longest 2.3 and 1.1 s), stragglers x1.23; an earlier form of this script, same day: x1.21, stretches
of 0.5-4 s at different moments on the two cores.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/core_modes.py [DURATION_S]
"""
import multiprocessing as mp
import os
import statistics
import sys
import time

import torch

WINDOW = 0.1


def run(core, start_at, duration, out):
    torch.set_num_threads(1)
    os.sched_setaffinity(0, {core})
    a, b = torch.randn(128, 512), torch.randn(512, 512)
    for _ in range(20):
        a @ b
    while time.time() < start_at:
        time.sleep(0.001)
    windows = []
    end = start_at + duration
    while time.time() < end:
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < WINDOW:
            a @ b
            n += 1
        windows.append((time.perf_counter() - t0) / n * 1e3)
    out.put((core, windows))


def stretches(windows, median):
    runs, length = [], 0
    for w in windows + [0.0]:
        if w > 1.25 * median:
            length += 1
        elif length:
            runs.append(length * WINDOW)
            length = 0
    return runs


def main():
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    cores = sorted(os.sched_getaffinity(0))
    out = mp.Queue()
    start_at = time.time() + 1.0
    procs = [mp.Process(target=run, args=(c, start_at, duration, out)) for c in cores]
    for p in procs:
        p.start()
    results = dict(out.get() for _ in procs)
    for p in procs:
        p.join()
    n = min(len(w) for w in results.values())
    medians = {c: statistics.median(w[:n]) for c, w in results.items()}
    slowest = [max(results[c][i] / medians[c] for c in cores) for i in range(n)]
    for c in cores:
        runs = stretches(results[c][:n], medians[c])
        longest = max(runs) if runs else 0.0
        print(f"core {c}: median {medians[c]:.3f} ms per matmul, min {min(results[c][:n]):.3f}, "
              f"max {max(results[c][:n]):.3f}; {len(runs)} slow stretch(es), longest {longest:.1f} s")
    print(f"{n} windows of {WINDOW} s on {len(cores)} cores at once: stragglers (median of the slowest core's "
          f"window over its own median) x{statistics.median(slowest):.2f}")


if __name__ == "__main__":
    main()
